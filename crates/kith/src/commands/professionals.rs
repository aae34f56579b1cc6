//! Professionals: adding them to teams (one, or a CSV file), their memberships and roles, two-step verification resets.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kith_app::{App, NewMember, Operator};
use kith_core::team::{MembershipRole, MembershipStatus};
use kith_core::text::Name;
use serde_json::json;

use super::input::{email, org_code, team_alias};
use super::output::print;
use crate::read_password_from_stdin;

/// A person, by email, in a team of an organisation.
#[derive(Args, Debug)]
pub struct TeamMember {
    #[arg(long)]
    org: String,
    #[arg(long)]
    team: String,
    #[arg(long)]
    email: String,
}

#[derive(Args, Debug)]
pub struct MembershipTarget {
    #[command(flatten)]
    member: TeamMember,
    /// Override the two-coordinator rule (audited).
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProfessionalCommand {
    /// Add a professional (or coordinator) to a team: a new account when the email is new,
    /// otherwise a new membership of the existing account.
    Add {
        #[command(flatten)]
        member: TeamMember,
        #[arg(long)]
        name: String,
        /// Add as a coordinator (runs the team; no clinical access).
        #[arg(long)]
        coordinator: bool,
        /// Read the new account's password from standard input (the account is then
        /// active; without it, the account is invited).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Deactivate a membership (this team only).
    Deactivate(MembershipTarget),
    /// Reactivate a membership.
    Reactivate(MembershipTarget),
    /// Make a member a coordinator or a professional.
    #[command(name = "set-role")]
    SetRole {
        #[command(flatten)]
        target: MembershipTarget,
        /// professional or coordinator.
        #[arg(long)]
        role: String,
    },
    /// Add many professionals to a team from a CSV file (format: docs/professionals-csv.md):
    /// new addresses get an invited account and an activation email, existing accounts a
    /// membership and a notice. Rows with problems are reported by line and not applied.
    Import {
        #[arg(long)]
        org: String,
        #[arg(long)]
        team: String,
        /// The CSV file (UTF-8, header row: email, given name, family name, job title,
        /// professional registration number, role).
        file: std::path::PathBuf,
        /// Check the file and say what each row would do, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write every row's outcome to this CSV file (line, email, outcome, detail).
        #[arg(long, value_name = "FILE.csv")]
        report: Option<std::path::PathBuf>,
    },
    /// Turn off an account's two-step verification (a lost phone and lost recovery codes),
    /// for an account no coordinator may change alone (it is active in more than one
    /// organisation): its sessions end and its holder is emailed. Audited.
    #[command(name = "reset-two-factor")]
    ResetTwoFactor {
        #[arg(long)]
        email: String,
    },
}

/// `kith professional …`.
pub(super) fn professional(
    app: &App,
    operator: &Operator,
    json: bool,
    command: ProfessionalCommand,
) -> anyhow::Result<()> {
    match command {
        ProfessionalCommand::Add {
            member: TeamMember { org, team, email: address },
            name,
            coordinator,
            password_stdin,
        } => {
            let password_hash = if password_stdin {
                Some(kith_app::password::hash_password(&read_password_from_stdin()?)?)
            } else {
                None
            };
            let new = NewMember {
                organisation: org_code(&org)?,
                team: team_alias(&team)?,
                email: email(&address)?,
                name: Name::parse("name", &name)?,
                role: if coordinator { MembershipRole::Coordinator } else { MembershipRole::Professional },
                password_hash,
            };
            let added = app.add_member(operator, &new)?;
            let value = json!({
                "id": added.account.id.to_string(),
                "email": added.account.email.as_str(),
                "account_created": added.account_created,
                "account_status": added.account.status.code(),
                "team": new.team.as_str(),
                "role": added.membership.role.code(),
            });
            print(json, value, || {
                format!(
                    "{} {} as {} of team {}{}",
                    if added.account_created { "created account" } else { "added existing account" },
                    added.account.email,
                    added.membership.role,
                    new.team,
                    if added.account.status == kith_core::team::AccountStatus::Invited {
                        " (invited: no password yet)"
                    } else {
                        ""
                    }
                )
            });
        }
        ProfessionalCommand::Deactivate(target) => {
            membership_status(app, operator, json, &target, MembershipStatus::Deactivated)?
        }
        ProfessionalCommand::Reactivate(target) => {
            membership_status(app, operator, json, &target, MembershipStatus::Active)?
        }
        ProfessionalCommand::SetRole { target, role } => {
            let role = MembershipRole::from_code(role.trim())
                .ok_or_else(|| anyhow!("--role must be professional or coordinator"))?;
            let change = app.set_membership_role(
                operator,
                &org_code(&target.member.org)?,
                &team_alias(&target.member.team)?,
                &email(&target.member.email)?,
                role,
                target.force,
            )?;
            print(
                json,
                json!({ "email": target.member.email, "team": target.member.team, "role": change.membership.role.code(), "overridden": change.overridden }),
                || {
                    format!(
                        "{} is now {} of team {}{}",
                        target.member.email,
                        change.membership.role,
                        target.member.team,
                        overridden_note(&change.overridden)
                    )
                },
            );
        }
        ProfessionalCommand::Import { org, team, file, dry_run, report } => {
            professional_import(app, operator, json, &org, &team, &file, dry_run, report.as_deref())?
        }
        ProfessionalCommand::ResetTwoFactor { email: address } => {
            let account = app.reset_two_factor(operator, &email(&address)?)?;
            print(json, json!({ "email": account.email.as_str(), "two_factor": false }), || {
                format!(
                    "two-step verification is off for {}: their sessions ended and they were emailed; they \
                     sign in with their password and set it up again",
                    account.email
                )
            });
        }
    }
    Ok(())
}

fn overridden_note(overridden: &Option<String>) -> String {
    overridden.as_ref().map(|rule| format!(" (forced, audited: {rule})")).unwrap_or_default()
}

/// `kith professional import`: previews (`--dry-run`) or applies a professionals CSV file,
/// prints the summary and the rows in error, and optionally writes every row's outcome.
/// A file that cannot be used at all is an error (exit status 1); rows in error are not.
#[allow(clippy::too_many_arguments)]
fn professional_import(
    app: &App,
    operator: &Operator,
    json: bool,
    org: &str,
    team: &str,
    file: &std::path::Path,
    dry_run: bool,
    report_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use kith_app::professionals_csv::Importer;

    let (code, alias) = (org_code(org)?, team_alias(team)?);
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let importer = Importer::Operator(operator);
    let report = if dry_run {
        app.preview_professionals_csv(&importer, &code, &alias, &bytes)?
    } else {
        app.import_professionals_csv(&importer, &code, &alias, &bytes)?
    };
    if let Some(path) = report_file {
        crate::private_file::write(path, report.to_csv().as_bytes(), crate::private_file::Existing::Replace)
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    let summary = report.is_usable().then(|| report.summary());
    let value = json!({
        "applied": report.applied,
        "summary": summary,
        "counts": {
            "created": report.counts.created,
            "added_to_team": report.counts.added_to_team,
            "already_in_team": report.counts.already_in_team,
            "errors": report.counts.errors,
        },
        "file_problems": report.file_problems.iter().map(|problem| json!({
            "line": problem.line, "message": problem.message,
        })).collect::<Vec<_>>(),
        "rows": report.rows.iter().map(|row| json!({
            "line": row.line,
            "email": row.email,
            "role": row.role.map(MembershipRole::code),
            "outcome": row.outcome.code(),
            "detail": row.outcome.detail(),
        })).collect::<Vec<_>>(),
    });
    if !report.is_usable() {
        if json {
            println!("{value}");
        }
        let problems: Vec<String> = report.file_problems.iter().map(|problem| format!("  {problem}")).collect();
        bail!("{}: nothing was imported, the file cannot be used:\n{}", file.display(), problems.join("\n"));
    }
    print(json, value, || {
        let mut out = String::new();
        if dry_run {
            out.push_str("dry run, nothing was written: ");
        }
        out.push_str(&report.summary());
        let errors: Vec<String> = report
            .error_rows()
            .map(|row| format!("  line {}: {}: {}", row.line, row.email, row.outcome.detail().unwrap_or_default()))
            .collect();
        if !errors.is_empty() {
            out.push_str(&format!("\nrows not {}:\n{}", if dry_run { "valid" } else { "applied" }, errors.join("\n")));
        }
        let deactivated: Vec<String> = report
            .rows
            .iter()
            .filter(|row| row.outcome.code() == "already_in_team_deactivated")
            .map(|row| format!("  line {}: {}", row.line, row.email))
            .collect();
        if !deactivated.is_empty() {
            out.push_str(&format!(
                "\nalready in the team but deactivated (unchanged; `kith professional reactivate` restores them):\n{}",
                deactivated.join("\n")
            ));
        }
        if let Some(path) = report_file {
            out.push_str(&format!("\nevery row's outcome: {}", path.display()));
        }
        out
    });
    Ok(())
}

fn membership_status(
    app: &App,
    operator: &Operator,
    json: bool,
    target: &MembershipTarget,
    status: MembershipStatus,
) -> anyhow::Result<()> {
    let change = app.set_membership_status(
        operator,
        &org_code(&target.member.org)?,
        &team_alias(&target.member.team)?,
        &email(&target.member.email)?,
        status,
        target.force,
    );
    let change = match change {
        Err(kith_app::AppError::TeamRule(rule)) => bail!("{rule} (or override with --force, which is audited)"),
        other => other?,
    };
    print(
        json,
        json!({ "email": target.member.email, "team": target.member.team, "status": change.membership.status.code(), "overridden": change.overridden }),
        || {
            format!(
                "{}'s membership of team {} is {}{}",
                target.member.email,
                target.member.team,
                change.membership.status,
                overridden_note(&change.overridden)
            )
        },
    );
    Ok(())
}
