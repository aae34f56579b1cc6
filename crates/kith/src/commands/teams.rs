//! Teams: creating them, going live, listing them with their members.

use clap::Subcommand;
use kith_app::{App, Operator};
use kith_core::LabelSet;
use kith_core::text::Name;
use serde_json::json;

use super::input::{org_code, team_alias};
use super::output::{print, team_json};

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Create a speciality team (it starts in set-up).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// Unique within the organisation; HL7 ZTM uses it.
        #[arg(long)]
        alias: String,
        /// Default privacy labels: general,sexual_health,mental_health,social_care.
        #[arg(long, default_value = "")]
        labels: String,
    },
    /// Take a team live (it needs two active coordinators).
    #[command(name = "go-live")]
    GoLive {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
    },
    /// List an organisation's teams and their members.
    List {
        #[arg(long)]
        org: String,
    },
}

/// `kith team …`.
pub(super) fn team(app: &App, operator: &Operator, json: bool, command: TeamCommand) -> anyhow::Result<()> {
    match command {
        TeamCommand::Create { org, name, alias, labels } => {
            let labels = LabelSet::parse_list(&labels)?;
            let team = app.create_team(
                operator,
                &org_code(&org)?,
                &Name::parse("name", &name)?,
                &team_alias(&alias)?,
                labels,
            )?;
            print(json, team_json(&team), || {
                format!(
                    "created team {} ({}) in set-up, default labels: {}\nid: {}",
                    team.name,
                    team.alias,
                    if labels.is_empty() { "none".to_owned() } else { labels.to_string() },
                    team.id
                )
            });
        }
        TeamCommand::GoLive { org, team } => {
            let team = app.go_live(operator, &org_code(&org)?, &team_alias(&team)?)?;
            print(json, team_json(&team), || format!("team {} is live", team.alias));
        }
        TeamCommand::List { org } => {
            let teams = app.teams_with_members(&org_code(&org)?)?;
            let value = json!({ "teams": teams.iter().map(|(team, members)| {
                let mut value = team_json(team);
                value["members"] = members.iter().map(|(membership, account)| json!({
                    "email": account.email.as_str(), "name": account.name.as_str(),
                    "role": membership.role.code(), "status": membership.status.code(), "account_status": account.status.code(),
                })).collect();
                value
            }).collect::<Vec<_>>() });
            print(json, value, || {
                let mut out = String::new();
                for (team, members) in &teams {
                    out.push_str(&format!(
                        "{} ({}, {}, labels: {})\n",
                        team.name, team.alias, team.status, team.default_labels
                    ));
                    for (membership, account) in members {
                        out.push_str(&format!(
                            "  {} <{}> {} {}\n",
                            account.name, account.email, membership.role, membership.status
                        ));
                    }
                }
                out.trim_end().to_owned()
            });
        }
    }
    Ok(())
}
