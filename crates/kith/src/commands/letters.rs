//! Letters to print.

use clap::Subcommand;
use kith_app::{App, Operator};
use serde_json::json;

use super::input::org_code;
use super::output::print;

#[derive(Subcommand, Debug)]
pub enum LettersCommand {
    /// Write the organisation's pending letter invitations to a PDF, one page each (name,
    /// address, the two codes and their expiry; never the date of birth), and mark them
    /// printed. Nothing is marked when the file cannot be written.
    Export {
        #[arg(long)]
        org: String,
        #[arg(long)]
        out: std::path::PathBuf,
        /// The address printed for registering (default KITH_PUBLIC_URL, else http://127.0.0.1:8080).
        #[arg(long, env = "KITH_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: String,
        /// Replace the file if it exists (by default an existing file is refused, so that a
        /// second export can never overwrite letters not yet printed).
        #[arg(long)]
        force: bool,
    },
}

/// `kith letters export`: letters to print, one PDF.
pub(super) fn letters(app: &App, operator: &Operator, json: bool, command: LettersCommand) -> anyhow::Result<()> {
    match command {
        LettersCommand::Export { org, out, public_url, force } => {
            let public_url = public_url.trim_end_matches('/').to_owned();
            let existing =
                if force { crate::private_file::Existing::Replace } else { crate::private_file::Existing::Refuse };
            // Written (owner-only, synced) inside the transaction that marks the letters
            // printed: if the file cannot be written, none is marked.
            let count = app.export_letters(operator, &org_code(&org)?, &mut |letters| {
                crate::private_file::write(&out, &crate::letters::letters_pdf(letters, &public_url), existing)
                    .map_err(|error| format!("{}: {error}", out.display()))
            })?;
            print(json, json!({ "letters": count, "file": out.display().to_string() }), || {
                format!("wrote {count} letter{} to {}", if count == 1 { "" } else { "s" }, out.display())
            });
        }
    }
    Ok(())
}
