//! The operator commands: parse flags into domain types once, call a use case, print.
//!
//! One module per concern, each with its flags (a clap subcommand enum) and the function
//! that runs them; [`run`] only picks the module. `hl7` is the feed's integrations and messages; `input` parses flags into domain types,
//! `output` prints (one JSON object with `--json`).

use kith_app::Operator;
use serde_json::json;

use crate::{Cli, Command, open_app};

mod audit;
mod hl7;
mod input;
mod letters;
mod organisations;
mod output;
mod patients;
mod professionals;
mod records;
mod teams;
mod tokens;

pub use audit::AuditCommand;
pub use hl7::{Hl7Command, IntegrationCommand};
pub use letters::LettersCommand;
pub use organisations::{LabelRuleCommand, OrgCommand, PrivacyOfficerCommand};
pub(crate) use output::print;
pub use patients::{EntryCommand, PatientCommand};
pub use professionals::ProfessionalCommand;
pub use records::{BreakGlassCommand, RecordCommand};
pub use teams::TeamCommand;
pub use tokens::TokenCommand;

pub fn run(cli: Cli, operator: &Operator) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => return crate::serve::run(&cli.config, args),
        Command::Demo(args) => return crate::demo::run(&cli.config, args),
        Command::Worker => return crate::delivery::run_worker(&cli.config),
        _ => {}
    }
    let app = open_app(&cli.config)?;
    match cli.command {
        Command::Serve(_) | Command::Demo(_) | Command::Worker => unreachable!("handled above"),
        Command::Outbox(command) => crate::delivery::outbox_command(&app, json, command)?,
        Command::Letters(command) => letters::letters(&app, operator, json, command)?,
        Command::Migrate => {
            // open_app has applied them; report where things stand.
            let report = app.store().migrate()?;
            print(json, json!({ "schema_version": report.current_version }), || {
                format!("database is at schema version {}", report.current_version)
            });
        }
        Command::Org(command) => organisations::org(&app, operator, json, command)?,
        Command::LabelRule(command) => organisations::label_rule(&app, operator, json, command)?,
        Command::PrivacyOfficer(command) => organisations::privacy_officer(&app, operator, json, command)?,
        Command::Team(command) => teams::team(&app, operator, json, command)?,
        Command::Professional(command) => professionals::professional(&app, operator, json, command)?,
        Command::Patient(command) => patients::patient(&app, operator, json, command)?,
        Command::Entry(command) => patients::entry(&app, operator, json, command)?,
        Command::Integration(command) => hl7::integration(&app, operator, json, command)?,
        Command::Hl7(command) => hl7::hl7(&app, operator, json, command)?,
        Command::Token(command) => tokens::token(&app, operator, json, command)?,
        Command::Record(command) => records::record(&app, json, command)?,
        Command::BreakGlass(command) => records::break_glass(&app, json, command)?,
        Command::Audit(command) => audit::audit(&app, json, command)?,
    }
    Ok(())
}
