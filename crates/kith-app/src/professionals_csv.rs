//! Adding many professionals to a team from a CSV file — the coordinators' "add many", and
//! the operator's `kith professional import`. The format is documented for people in
//! `docs/professionals-csv.md` (template: `docs/professionals-template.csv`).
//!
//! Two steps, one code path: [`App::preview_professionals_csv`] reads and checks the file and
//! says what each row would do, in a read-only transaction; [`App::import_professionals_csv`]
//! does it, applying every valid row in one transaction. A problem with the file itself (no
//! usable header, not UTF-8, a quote never closed, too many rows) is a file-level problem and
//! nothing is applied. A problem with a row is reported with the row's line number and
//! nothing from that row is applied; the other rows still are.
//!
//! Reading the file is pure: a small RFC 4180 reader below (about a hundred lines, no new
//! dependency), which also knows the physical line each row starts on, for the report. The
//! database is asked about all the file's addresses at once, in chunks, and the writes are
//! multi-row inserts (`kith_store::professionals`), so that 10,000 rows take well under the
//! 5 s goal on PostgreSQL too (bench/onboarding).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::coordination::{AddressFacts, Joining, MembershipInvitation, decide_joining};
use kith_core::model::{Account, Membership, Organisation, Team};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamRuleViolation, TeamStatus};
use kith_core::text::{EmailAddress, Name, OrganisationCode, TeamAlias};
use kith_core::{AccountId, MembershipInvitationId, Timestamp};
use kith_store::professionals::NewAccountCode;
use kith_store::{KnownTies, NewMembershipInvitation, OutboxMessage, Tx};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::coordination::coordinator_standing;
use crate::organisations::{organisation_by_code, team_by_alias};
use crate::outbox::Notice;
use crate::secrets::{new_secret, token_hash};
use crate::{App, AppError, AppResult, AuditBuilder, Operator, new_uuid};

/// The most data rows one file may have; a longer file is refused whole.
pub const MAX_ROWS: usize = 50_000;
/// How long a new account's activation link works.
pub const ACTIVATION_CODE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest job title, in characters.
pub const MAX_JOB_TITLE: usize = 200;
/// The longest professional registration number, in characters.
pub const MAX_REGISTRATION_NUMBER: usize = 50;
/// The template's header row.
pub const TEMPLATE_HEADER: &str = "email,given name,family name,job title,professional registration number,role";

/// Who is importing, which decides the audit actor and channel and what is checked.
#[derive(Clone, Copy, Debug)]
pub enum Importer<'a> {
    /// The operator, through the CLI (channel `cli`): may import into any team.
    Operator(&'a Operator),
    /// A signed-in coordinator, through the web application (channel `web`): must hold an
    /// active coordinator membership of the team, on an active account. Adds at once only
    /// accounts that are their organisation's alone; every other address is invited
    /// (`kith_core::coordination::decide_joining`), and the report does not tell them apart.
    Coordinator(AccountId),
}

impl Importer<'_> {
    fn actor(&self) -> Actor {
        match self {
            Importer::Operator(operator) => operator.actor(),
            Importer::Coordinator(account) => Actor::Account(*account),
        }
    }

    fn channel(&self) -> Channel {
        match self {
            Importer::Operator(_) => Channel::Cli,
            Importer::Coordinator(_) => Channel::Web,
        }
    }
}

/// A problem with the file as a whole: nothing in it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    /// The line it is on, when it is on one.
    pub line: Option<usize>,
    pub message: String,
}

impl FileProblem {
    fn whole(message: impl Into<String>) -> Self {
        Self { line: None, message: message.into() }
    }
    fn at(line: usize, message: impl Into<String>) -> Self {
        Self { line: Some(line), message: message.into() }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What a row did (or, in a preview, would do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowOutcome {
    /// A new account (invited, no password) with a membership of the team; an activation
    /// email is on its way.
    Created,
    /// An existing account got a membership of the team; it is told by email.
    AddedToTeam,
    /// The account is already a member (with this role): nothing changed. A deactivated
    /// membership stays deactivated — reactivating it is a separate action.
    AlreadyInTeam { role: MembershipRole, deactivated: bool },
    /// A coordinator's import: an email went to the address, and they join the team only
    /// once they accept. The same outcome for a new address, another organisation's
    /// professional and a patient's address, so that it tells the coordinator nothing about
    /// who holds the address.
    Invited,
    /// A coordinator's import: an invitation of the team to this address still waits for
    /// an answer; nothing changed.
    AlreadyInvited,
    /// The row was not applied, for these reasons (at least one).
    Error(Vec<String>),
}

impl RowOutcome {
    /// A stable code for machines (JSON, the report file).
    pub fn code(&self) -> &'static str {
        match self {
            RowOutcome::Created => "created",
            RowOutcome::AddedToTeam => "added_to_team",
            RowOutcome::AlreadyInTeam { deactivated: false, .. } => "already_in_team",
            RowOutcome::AlreadyInTeam { deactivated: true, .. } => "already_in_team_deactivated",
            RowOutcome::Invited => "invited",
            RowOutcome::AlreadyInvited => "already_invited",
            RowOutcome::Error(_) => "error",
        }
    }

    /// Words for people; `applied` is false in a preview ("would be created").
    pub fn label(&self, applied: bool) -> &'static str {
        match (self, applied) {
            (RowOutcome::Created, true) => "created",
            (RowOutcome::Created, false) => "would be created",
            (RowOutcome::AddedToTeam, true) => "added to team",
            (RowOutcome::AddedToTeam, false) => "would be added to team",
            (RowOutcome::AlreadyInTeam { deactivated: false, .. }, _) => "already in team",
            (RowOutcome::AlreadyInTeam { deactivated: true, .. }, _) => "already in team (deactivated)",
            (RowOutcome::Invited, true) => "invited",
            (RowOutcome::Invited, false) => "would be invited",
            (RowOutcome::AlreadyInvited, _) => "already invited",
            (RowOutcome::Error(_), _) => "error",
        }
    }

    /// More about the outcome, when there is more to say: an error's reasons, or the role an
    /// existing member has.
    pub fn detail(&self) -> Option<String> {
        match self {
            RowOutcome::Error(reasons) => Some(reasons.join("; ")),
            RowOutcome::AlreadyInTeam { role, deactivated: false } => Some(format!("a {role} of the team")),
            RowOutcome::AlreadyInTeam { role, deactivated: true } => {
                Some(format!("a {role} of the team, deactivated: reactivate the membership to restore access"))
            }
            RowOutcome::Invited => Some(INVITED.to_owned()),
            RowOutcome::AlreadyInvited => Some("an invitation to this address is waiting for an answer".to_owned()),
            RowOutcome::Created | RowOutcome::AddedToTeam => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, RowOutcome::Error(_))
    }
}

/// What an invited row means, true whoever holds the address (or whether anyone does).
pub const INVITED: &str = "an email goes to this address; if it already has a Kith account, its holder is asked to \
     accept; they join the team only once they accept (someone new to Kith, by activating their account)";

/// One data row of the file and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowReport {
    /// The physical line the row starts on (the header is line 1 when it is the first line).
    pub line: usize,
    /// The email address as typed (trimmed).
    pub email: String,
    /// The role the row asks for, when the row gives a valid one.
    pub role: Option<MembershipRole>,
    pub outcome: RowOutcome,
}

/// How many rows had each outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsvCounts {
    pub created: usize,
    pub added_to_team: usize,
    /// Including deactivated memberships.
    pub already_in_team: usize,
    /// A coordinator's import: invitations sent, and rows with one already waiting.
    pub invited: usize,
    pub already_invited: usize,
    pub errors: usize,
}

/// What an import (or its preview) did with a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsvReport {
    /// True when the valid rows were written; false for a preview, and when the file had a
    /// file-level problem (then nothing was written and `rows` is empty).
    pub applied: bool,
    /// A coordinator's import, where addresses the organisation may not know are invited
    /// (the summary counts invitations instead of accounts created).
    pub by_invitation: bool,
    pub file_problems: Vec<FileProblem>,
    /// Every data row, in file order.
    pub rows: Vec<RowReport>,
    pub counts: CsvCounts,
}

impl CsvReport {
    fn unusable(file_problems: Vec<FileProblem>) -> Self {
        Self { applied: false, by_invitation: false, file_problems, rows: Vec::new(), counts: CsvCounts::default() }
    }

    /// False when the file itself could not be used (see `file_problems`).
    pub fn is_usable(&self) -> bool {
        self.file_problems.is_empty()
    }

    /// The rows that were not applied.
    pub fn error_rows(&self) -> impl Iterator<Item = &RowReport> {
        self.rows.iter().filter(|row| row.outcome.is_error())
    }

    /// One line, e.g. `created 9,998, added to team 1, already in team 0, errors 1` (a
    /// preview says `would create …, would add to team …`); a coordinator's, e.g. `invited
    /// 3, added to team 1, already in team 0, already invited 0, errors 1`.
    pub fn summary(&self) -> String {
        let counts = &self.counts;
        if self.by_invitation {
            let (invite, add) =
                if self.applied { ("invited", "added to team") } else { ("would invite", "would add to team") };
            return format!(
                "{invite} {}, {add} {}, already in team {}, already invited {}, errors {}",
                thousands(counts.invited),
                thousands(counts.added_to_team),
                thousands(counts.already_in_team),
                thousands(counts.already_invited),
                thousands(counts.errors)
            );
        }
        let (create, add) =
            if self.applied { ("created", "added to team") } else { ("would create", "would add to team") };
        format!(
            "{create} {}, {add} {}, already in team {}, errors {}",
            thousands(counts.created),
            thousands(counts.added_to_team),
            thousands(counts.already_in_team),
            thousands(counts.errors)
        )
    }

    /// Every row's outcome as CSV (`line,email,outcome,detail`), for the coordinator to
    /// download or the operator's `--report` file.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("line,email,outcome,detail\r\n");
        for problem in &self.file_problems {
            let line = problem.line.map(|line| line.to_string()).unwrap_or_default();
            out.push_str(&format!("{line},,file error,{}\r\n", csv_field(&problem.message)));
        }
        for row in &self.rows {
            out.push_str(&format!(
                "{},{},{},{}\r\n",
                row.line,
                csv_field(&row.email),
                csv_field(row.outcome.label(self.applied)),
                csv_field(&row.outcome.detail().unwrap_or_default())
            ));
        }
        out
    }
}

/// A number with thousands separators: 9998 → `9,998`.
pub fn thousands(number: usize) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A CSV field, quoted when it needs to be. A field starting with `=`, `+`, `-` or `@` is
/// prefixed with `'` so that a spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

// ---------------------------------------------------------------------------------------
// Reading the file (pure)
// ---------------------------------------------------------------------------------------

/// One record of the file: the line it starts on, and its fields.
#[derive(Debug)]
struct Record {
    line: usize,
    fields: Vec<String>,
}

impl Record {
    fn is_blank(&self) -> bool {
        self.fields.iter().all(|field| field.trim().is_empty())
    }
}

/// Whether `bytes[index]` ends a line: `\n`, or `\r` not followed by `\n`.
fn ends_line(bytes: &[u8], index: usize) -> bool {
    bytes[index] == b'\n' || (bytes[index] == b'\r' && bytes.get(index + 1) != Some(&b'\n'))
}

/// The line `offset` is on (lines end with CRLF, LF or CR).
fn line_at(bytes: &[u8], offset: usize) -> usize {
    1 + (0..offset.min(bytes.len())).filter(|&index| ends_line(bytes, index)).count()
}

/// The file's text without its byte order mark; invalid UTF-8 is refused with its line.
fn decode(bytes: &[u8]) -> Result<&str, FileProblem> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(FileProblem::whole("the file is UTF-16: save it as \"CSV UTF-8\" and upload it again"));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|error| {
        let line = line_at(bytes, error.valid_up_to());
        FileProblem::at(line, "is not valid UTF-8 text: save the file as \"CSV UTF-8\" and upload it again")
    })
}

/// Splits the text into records with the `csv` crate (RFC 4180: fields separated by commas,
/// optionally in double quotes, a doubled quote inside quotes is one quote, quoted fields may
/// hold commas and line breaks; lines end with CRLF, LF or CR), each with the line it starts
/// on. Blank records are dropped. Stops with a file-level problem when a quote is never
/// closed (the reader would otherwise take the rest of the file as one field), or when there
/// are more than `max_records` non-blank records.
fn read_records(text: &str, max_records: usize) -> Result<Vec<Record>, FileProblem> {
    let bytes = text.as_bytes();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = Vec::new();
    let mut raw = csv::StringRecord::new();
    let mut last_start = 0;
    let (mut line, mut counted) = (1, 0);
    loop {
        let start = reader.position().byte() as usize;
        match reader.read_record(&mut raw) {
            Ok(true) => {}
            Ok(false) => break,
            // The text is UTF-8 already; a reader error is not expected, but is a problem
            // of the file, not of Kith.
            Err(error) => {
                return Err(FileProblem::at(line_at(bytes, start), format!("cannot be read as CSV ({error})")));
            }
        }
        // The reader's own position skips blank lines; the record starts at its first byte.
        let mut first = raw.position().map_or(start, |position| position.byte() as usize);
        // It may point at the line break that ended the last record (`\n` of a CRLF).
        while matches!(bytes.get(first), Some(b'\r' | b'\n')) {
            first += 1;
        }
        last_start = first;
        // Records only move forward: count line breaks since the last one (linear in the file).
        line += (counted..first).filter(|&index| ends_line(bytes, index)).count();
        counted = first;
        let record = Record { line, fields: raw.iter().map(str::to_owned).collect() };
        if record.is_blank() {
            continue;
        }
        if records.len() == max_records {
            return Err(FileProblem::whole(format!(
                "the file has more than {} rows: at most {} can be added at once, so split it into smaller files",
                thousands(MAX_ROWS),
                thousands(MAX_ROWS)
            )));
        }
        records.push(record);
    }
    // Quotes come in pairs in well-formed CSV; an odd number in the last record means one was
    // opened and never closed.
    if bytes[last_start..].iter().filter(|&&byte| byte == b'"').count() % 2 == 1 {
        return Err(FileProblem::at(
            line + (counted..last_start).filter(|&index| ends_line(bytes, index)).count(),
            "a quoted field starts on this line and its closing quote (\") is missing",
        ));
    }
    Ok(records)
}

/// The template's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Email,
    GivenName,
    FamilyName,
    JobTitle,
    RegistrationNumber,
    Role,
}

impl Column {
    const ALL: [Column; 6] = [
        Column::Email,
        Column::GivenName,
        Column::FamilyName,
        Column::JobTitle,
        Column::RegistrationNumber,
        Column::Role,
    ];

    fn name(self) -> &'static str {
        match self {
            Column::Email => "email",
            Column::GivenName => "given name",
            Column::FamilyName => "family name",
            Column::JobTitle => "job title",
            Column::RegistrationNumber => "professional registration number",
            Column::Role => "role",
        }
    }

    fn required(self) -> bool {
        matches!(self, Column::Email | Column::GivenName | Column::FamilyName)
    }

    /// The column a header names: compared without case, spaces, underscores and hyphens,
    /// and a few names other systems export under are accepted too.
    fn from_header(header: &str) -> Option<Column> {
        let key: String = header
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        Some(match key.as_str() {
            "email" | "emailaddress" => Column::Email,
            "givenname" | "firstname" | "forename" => Column::GivenName,
            "familyname" | "lastname" | "surname" => Column::FamilyName,
            "jobtitle" => Column::JobTitle,
            "professionalregistrationnumber" | "registrationnumber" => Column::RegistrationNumber,
            "role" => Column::Role,
            _ => return None,
        })
    }
}

/// Where each column is in the file.
struct Header {
    positions: [Option<usize>; 6],
    /// The number of header cells. Cells left empty name no column: a value under one, or
    /// beyond the last, is an error in its row.
    width: usize,
}

impl Header {
    fn read(record: &Record) -> Result<Header, Vec<FileProblem>> {
        let line = record.line;
        let mut problems = Vec::new();
        let mut positions = [None; 6];
        let mut unknown = Vec::new();
        for (index, cell) in record.fields.iter().enumerate() {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            match Column::from_header(cell) {
                Some(column) => {
                    let slot = &mut positions[column as usize];
                    match slot {
                        Some(first) => problems.push(FileProblem::at(
                            line,
                            format!(
                                "the column {:?} appears twice (columns {} and {})",
                                column.name(),
                                *first + 1,
                                index + 1
                            ),
                        )),
                        None => *slot = Some(index),
                    }
                }
                None => unknown.push(format!("{cell:?}")),
            }
        }
        if !unknown.is_empty() {
            problems.push(FileProblem::at(
                line,
                format!(
                    "unknown column{} {}: the columns are {}",
                    if unknown.len() == 1 { "" } else { "s" },
                    unknown.join(", "),
                    Column::ALL.map(Column::name).join(", ")
                ),
            ));
        }
        let missing: Vec<&str> = Column::ALL
            .into_iter()
            .filter(|column| column.required() && positions[*column as usize].is_none())
            .map(Column::name)
            .collect();
        if !missing.is_empty() {
            problems.push(FileProblem::at(
                line,
                format!(
                    "missing required column{} {} (the first row must be the header: {TEMPLATE_HEADER})",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
            ));
        }
        if problems.is_empty() { Ok(Header { positions, width: record.fields.len() }) } else { Err(problems) }
    }

    fn value<'r>(&self, record: &'r Record, column: Column) -> &'r str {
        self.positions[column as usize].and_then(|index| record.fields.get(index)).map_or("", |value| value.trim())
    }

    fn is_named(&self, index: usize) -> bool {
        self.positions.contains(&Some(index))
    }
}

/// A row that passed every check that needs no database.
#[derive(Clone, Debug)]
struct ValidRow {
    email: EmailAddress,
    name: Name,
    role: MembershipRole,
    job_title: Option<String>,
    registration_number: Option<String>,
}

/// A data row as read: where it is, the email as typed, and the row or its problems.
#[derive(Clone, Debug)]
struct ReadRow {
    line: usize,
    email_as_typed: String,
    role: Option<MembershipRole>,
    checked: Result<ValidRow, Vec<String>>,
}

/// Reads and checks a whole file: the data rows, or the file-level problems.
fn read_file(bytes: &[u8]) -> Result<Vec<ReadRow>, Vec<FileProblem>> {
    let text = decode(bytes).map_err(|problem| vec![problem])?;
    let records = read_records(text, MAX_ROWS + 1).map_err(|problem| vec![problem])?;
    let Some((header, data)) = records.split_first() else {
        return Err(vec![FileProblem::whole(format!(
            "the file is empty: it needs a header row ({TEMPLATE_HEADER}) and a row per person"
        ))]);
    };
    let header = Header::read(header)?;
    if data.is_empty() {
        return Err(vec![FileProblem::whole("the file has a header row but no rows under it")]);
    }
    // The first line of each address, whether or not the rest of that row is valid: the
    // same address again is an error on the later line.
    let mut first_line_of: HashMap<EmailAddress, usize> = HashMap::with_capacity(data.len());
    Ok(data
        .iter()
        .map(|record| {
            let email_as_typed = header.value(record, Column::Email);
            let (mut checked, role) = check_row(&header, record);
            if let Ok(email) = EmailAddress::parse(email_as_typed) {
                match first_line_of.get(&email) {
                    Some(first) => {
                        let duplicate = format!("email: {email} is also on line {first} (one row per person)");
                        match &mut checked {
                            Ok(_) => checked = Err(vec![duplicate]),
                            Err(reasons) => reasons.push(duplicate),
                        }
                    }
                    None => {
                        first_line_of.insert(email, record.line);
                    }
                }
            }
            ReadRow { line: record.line, email_as_typed: email_as_typed.to_owned(), role, checked }
        })
        .collect())
}

/// Checks one row's values; also returns the role when it is valid.
fn check_row(header: &Header, record: &Record) -> (Result<ValidRow, Vec<String>>, Option<MembershipRole>) {
    let mut problems = Vec::new();
    if record.fields.len() > header.width && record.fields[header.width..].iter().any(|field| !field.trim().is_empty())
    {
        problems.push(format!(
            "has {} values but the header has {} columns (a value with a comma must be in double quotes)",
            record.fields.len(),
            header.width
        ));
    }
    let unnamed: Vec<String> = (0..header.width.min(record.fields.len()))
        .filter(|&index| !header.is_named(index) && !record.fields[index].trim().is_empty())
        .map(|index| (index + 1).to_string())
        .collect();
    if !unnamed.is_empty() {
        problems.push(format!("has a value in column {}, which has no header", unnamed.join(", ")));
    }

    let value = |column| header.value(record, column);
    let mut required = |column: Column| -> Option<&str> {
        let text = value(column);
        if text.is_empty() {
            problems.push(format!("{}: missing", column.name()));
            None
        } else {
            Some(text)
        }
    };
    let email = required(Column::Email);
    let given = required(Column::GivenName);
    let family = required(Column::FamilyName);
    let email = email.and_then(|text| EmailAddress::parse(text).map_err(|error| problems.push(error.to_string())).ok());
    let given =
        given.and_then(|text| Name::parse("given name", text).map_err(|error| problems.push(error.to_string())).ok());
    let family =
        family.and_then(|text| Name::parse("family name", text).map_err(|error| problems.push(error.to_string())).ok());
    let name = match (&given, &family) {
        (Some(given), Some(family)) => Name::parse("name", &format!("{given} {family}"))
            .map_err(|_| problems.push("given name and family name together must be at most 199 characters".to_owned()))
            .ok(),
        _ => None,
    };

    // Kept on a new account (shown to the team's coordinators); an existing account's are
    // left as they are.
    let job_title = value(Column::JobTitle);
    if job_title.chars().count() > MAX_JOB_TITLE {
        problems.push(format!("job title: must be at most {MAX_JOB_TITLE} characters"));
    } else if job_title.chars().any(char::is_control) {
        problems.push("job title: must not contain line breaks or control characters".to_owned());
    }
    let registration = value(Column::RegistrationNumber);
    if registration.chars().count() > MAX_REGISTRATION_NUMBER {
        problems
            .push(format!("professional registration number: must be at most {MAX_REGISTRATION_NUMBER} characters"));
    } else if !registration.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-') {
        problems.push(format!(
            "professional registration number: {registration:?} may have only letters, digits, spaces and hyphens"
        ));
    }

    let role_text = value(Column::Role);
    let role = if role_text.is_empty() {
        Some(MembershipRole::Professional)
    } else {
        let role = MembershipRole::from_code(&role_text.to_lowercase());
        if role.is_none() {
            problems
                .push(format!("role: {role_text:?} must be professional or coordinator (empty means professional)"));
        }
        role
    };

    match (email, name, role) {
        (Some(email), Some(name), Some(role)) if problems.is_empty() => {
            let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            let (job_title, registration_number) = (optional(job_title), optional(registration));
            (Ok(ValidRow { email, name, role, job_title, registration_number }), Some(role))
        }
        _ => (Err(problems), role),
    }
}

// ---------------------------------------------------------------------------------------
// Deciding and applying (in one transaction)
// ---------------------------------------------------------------------------------------

/// Who gets an invitation, and what it carries.
enum Invitee {
    /// No account has the address: a new invited account, whose activation accepts.
    NewAccount,
    /// An account has it; one that never set a password gets a new activation link (which
    /// accepts), any other is asked to sign in and answer.
    Existing { account: Account, activate: bool },
    /// A patient's address: never a membership; the address is told why.
    Unusable,
}

/// What a row will do, decided against the database.
enum Plan {
    /// The operator: a new account with a membership.
    Create,
    Add(Account),
    Already {
        role: MembershipRole,
        deactivated: bool,
    },
    /// A coordinator: an open invitation of the team to this address already waits.
    AlreadyInvited,
    /// A coordinator: an invitation, for the reason given (audited, never shown).
    Invite {
        invitee: Invitee,
        why: Joining,
    },
    Refuse(Vec<String>),
}

/// The refusal of a patient's address, for the operator (who may know it).
const PATIENT_ADDRESS: &str = "email: this address belongs to a patient's record in Kith, and a patient's account \
     cannot be made a professional's: use the professional's work address";

/// Decides every row with a fixed set of statements per 500 addresses, whatever the
/// addresses are: the accounts with their membership of the team, the patient records
/// with those addresses, and — for a coordinator — what ties each account to
/// organisations and the team's open invitations.
fn plan(
    tx: &mut Tx<'_>,
    importer: &Importer<'_>,
    organisation: &Organisation,
    team: &Team,
    rows: &[ReadRow],
) -> AppResult<Vec<Plan>> {
    let emails: Vec<&EmailAddress> =
        rows.iter().filter_map(|row| row.checked.as_ref().ok().map(|v| &v.email)).collect();
    let known: HashMap<String, _> = tx
        .known_accounts(team.id, &emails)?
        .into_iter()
        .map(|known| (known.account.email.as_str().to_owned(), known))
        .collect();
    let patient_emails: HashSet<String> = tx.patient_emails(&emails)?.into_iter().collect();
    let coordinator = matches!(importer, Importer::Coordinator(_));
    let (ties, invited) = if coordinator {
        (tx.ties_by_email(&emails)?, tx.open_invitation_emails(team.id, &emails)?)
    } else {
        (HashMap::new(), HashSet::new())
    };
    let no_ties = KnownTies::default();
    Ok(rows
        .iter()
        .map(|row| match &row.checked {
            Err(reasons) => Plan::Refuse(reasons.clone()),
            Ok(valid) => {
                let address = valid.email.as_str();
                let known = known.get(address);
                if let Some(membership) = known.and_then(|known| known.membership.as_ref()) {
                    return Plan::Already {
                        role: membership.role,
                        deactivated: membership.status == MembershipStatus::Deactivated,
                    };
                }
                let on_patient_record = patient_emails.contains(address);
                if !coordinator {
                    return match known {
                        _ if on_patient_record || known.is_some_and(|known| known.is_patient) => {
                            Plan::Refuse(vec![PATIENT_ADDRESS.to_owned()])
                        }
                        None => Plan::Create,
                        Some(known) => Plan::Add(known.account.clone()),
                    };
                }
                if invited.contains(address) {
                    return Plan::AlreadyInvited;
                }
                let account_ties = ties.get(address).unwrap_or(&no_ties);
                let facts = AddressFacts { account: known.map(|_| account_ties.ties()), on_patient_record };
                let why = decide_joining(organisation.id, &facts);
                let invitee = match (why, known) {
                    (Joining::Directly, Some(known)) => return Plan::Add(known.account.clone()),
                    (Joining::Unusable(_), _) => Invitee::Unusable,
                    (_, None) => Invitee::NewAccount,
                    (_, Some(known)) => Invitee::Existing {
                        account: known.account.clone(),
                        activate: known.account.status == AccountStatus::Invited,
                    },
                };
                Plan::Invite { invitee, why }
            }
        })
        .collect())
}

/// What [`apply`] writes, gathered for multi-row inserts.
#[derive(Default)]
struct Writes {
    accounts: Vec<kith_store::professionals::InvitedAccount>,
    memberships: Vec<Membership>,
    codes: Vec<NewAccountCode>,
    messages: Vec<OutboxMessage>,
    invitations: Vec<NewMembershipInvitation>,
}

impl Writes {
    /// A new activation code for `account` and the email that carries it; the code's hash.
    fn activation(&mut self, account: &Account, team: &Team, now: Timestamp) -> (Uuid, [u8; 32]) {
        let expires_at = now.plus(ACTIVATION_CODE_LIFETIME);
        let code = new_secret();
        let code_hash = token_hash(&code);
        self.codes.push(NewAccountCode { code_hash, account: account.id, expires_at });
        let notice = Notice::ProfessionalActivation {
            account: account.id,
            team: team.name.clone(),
            expires: expires_at.date(),
            code,
        };
        let message = notice.email(&account.email, now);
        let id = message.id;
        self.messages.push(message);
        (id, code_hash)
    }

    /// An email without a code; its id.
    fn notice(&mut self, notice: Notice, recipient: &EmailAddress, now: Timestamp) -> Uuid {
        let message = notice.email(recipient, now);
        let id = message.id;
        self.messages.push(message);
        id
    }
}

/// A new invited account from a valid row (no password, the row's name and details).
fn new_account(valid: &ValidRow, now: Timestamp) -> kith_store::professionals::InvitedAccount {
    kith_store::professionals::InvitedAccount {
        account: Account {
            id: AccountId::from_uuid(new_uuid()),
            email: valid.email.clone(),
            name: valid.name.clone(),
            status: AccountStatus::Invited,
            created_at: now,
        },
        job_title: valid.job_title.clone(),
        registration_number: valid.registration_number.clone(),
    }
}

/// Writes what the plan says: accounts, memberships, invitations, activation codes and
/// outbox messages in multi-row inserts, and an audit event per account, membership and
/// invitation.
fn apply(
    tx: &mut Tx<'_>,
    importer: &Importer<'_>,
    organisation: &Organisation,
    team: &Team,
    rows: &[ReadRow],
    plans: &[Plan],
    now: Timestamp,
) -> AppResult<()> {
    let (actor, channel) = (importer.actor(), importer.channel());
    let event = |action| AuditBuilder::new(now, actor.clone(), channel, action).organisation(organisation.id);
    let mut writes = Writes::default();
    for (row, plan) in rows.iter().zip(plans) {
        let Ok(valid) = &row.checked else { continue };
        let account = match plan {
            Plan::Create => {
                let invited = new_account(valid, now);
                let account = invited.account.clone();
                writes.activation(&account, team, now);
                tx.audit(
                    event("account.create")
                        .subject(account.id)
                        .reason(format!("source=csv line={}", row.line))
                        .basis("administration")
                        .build(),
                );
                writes.accounts.push(invited);
                account
            }
            Plan::Add(account) => {
                let notice = Notice::ProfessionalAdded { account: account.id, team: team.name.clone() };
                writes.notice(notice, &account.email, now);
                account.clone()
            }
            Plan::Invite { invitee, why } => {
                let Importer::Coordinator(coordinator) = *importer else { continue };
                let (subject, message, activation_code_hash) = match invitee {
                    Invitee::NewAccount => {
                        let invited = new_account(valid, now);
                        let account = invited.account.clone();
                        let (message, code_hash) = writes.activation(&account, team, now);
                        tx.audit(
                            event("account.create")
                                .subject(account.id)
                                .reason(format!("source=csv line={}", row.line))
                                .basis("administration")
                                .build(),
                        );
                        writes.accounts.push(invited);
                        (Some(account.id), message, Some(code_hash))
                    }
                    Invitee::Existing { account, activate: true } => {
                        let (message, code_hash) = writes.activation(account, team, now);
                        (Some(account.id), message, Some(code_hash))
                    }
                    Invitee::Existing { account, activate: false } => {
                        let notice = Notice::MembershipInvitation {
                            account: account.id,
                            team: team.name.clone(),
                            organisation: organisation.name.clone(),
                        };
                        (Some(account.id), writes.notice(notice, &account.email, now), None)
                    }
                    Invitee::Unusable => {
                        let notice = Notice::ProfessionalAddressUnusable { organisation: organisation.name.clone() };
                        (None, writes.notice(notice, &valid.email, now), None)
                    }
                };
                let invitation = MembershipInvitation {
                    id: MembershipInvitationId::from_uuid(new_uuid()),
                    team: team.id,
                    email: valid.email.clone(),
                    name: valid.name.clone(),
                    role: valid.role,
                    job_title: valid.job_title.clone(),
                    registration_number: valid.registration_number.clone(),
                    invited_by: coordinator,
                    created_at: now,
                };
                let mut audited = event("membership.invite").team(team.id).basis("administration").reason(format!(
                    "role={} source=csv line={} invitation={}: {why}",
                    valid.role, row.line, invitation.id
                ));
                if let Some(subject) = subject {
                    audited = audited.subject(subject);
                }
                tx.audit(audited.build());
                writes.invitations.push(NewMembershipInvitation { invitation, message, activation_code_hash });
                continue;
            }
            Plan::Already { .. } | Plan::AlreadyInvited | Plan::Refuse(_) => continue,
        };
        writes.memberships.push(Membership {
            account: account.id,
            team: team.id,
            role: valid.role,
            status: MembershipStatus::Active,
        });
        tx.audit(
            event("membership.add")
                .team(team.id)
                .subject(account.id)
                .reason(format!("role={} source=csv line={}", valid.role, row.line))
                .basis("administration")
                .build(),
        );
    }
    tx.insert_invited_accounts(&writes.accounts)?;
    tx.insert_memberships(&writes.memberships, now)?;
    tx.insert_activation_codes(&writes.codes, now)?;
    tx.enqueue_many(&writes.messages)?;
    tx.insert_membership_invitations(&writes.invitations)?;
    Ok(())
}

fn report(rows: &[ReadRow], plans: Vec<Plan>, applied: bool, by_invitation: bool) -> CsvReport {
    let mut counts = CsvCounts::default();
    let rows = rows
        .iter()
        .zip(plans)
        .map(|(row, plan)| {
            let outcome = match plan {
                Plan::Create => {
                    counts.created += 1;
                    RowOutcome::Created
                }
                Plan::Add(_) => {
                    counts.added_to_team += 1;
                    RowOutcome::AddedToTeam
                }
                Plan::Already { role, deactivated } => {
                    counts.already_in_team += 1;
                    RowOutcome::AlreadyInTeam { role, deactivated }
                }
                Plan::AlreadyInvited => {
                    counts.already_invited += 1;
                    RowOutcome::AlreadyInvited
                }
                // The same outcome whoever holds the address, and whether anyone does.
                Plan::Invite { .. } => {
                    counts.invited += 1;
                    RowOutcome::Invited
                }
                Plan::Refuse(reasons) => {
                    counts.errors += 1;
                    RowOutcome::Error(reasons)
                }
            };
            RowReport { line: row.line, email: row.email_as_typed.clone(), role: row.role, outcome }
        })
        .collect();
    CsvReport { applied, by_invitation, file_problems: Vec::new(), rows, counts }
}

/// Only the team's active coordinators (on active accounts) may import through the web;
/// a refusal is audited with its precise reason.
fn authorise(
    tx: &mut Tx<'_>,
    importer: &Importer<'_>,
    organisation: &Organisation,
    team: &Team,
    now: Timestamp,
) -> AppResult<Result<(), AppError>> {
    let Importer::Coordinator(account) = *importer else { return Ok(Ok(())) };
    let Err(reason) = coordinator_standing(tx, account, team.id)? else { return Ok(Ok(())) };
    tx.audit(
        AuditBuilder::new(now, importer.actor(), importer.channel(), "professionals.import")
            .organisation(organisation.id)
            .team(team.id)
            .outcome(Outcome::Denied)
            .reason(reason)
            .basis("administration")
            .build(),
    );
    Ok(Err(AppError::Forbidden(format!(
        "only the active coordinators of team {} can add its professionals",
        team.alias
    ))))
}

/// The audit event of a preview: how many rows, and the file's SHA-256 (to match it to a
/// file later), but no address.
fn preview_event(
    importer: &Importer<'_>,
    organisation: &Organisation,
    team: &Team,
    bytes: &[u8],
    report: &CsvReport,
    now: Timestamp,
) -> kith_core::audit::AuditRecord {
    let digest: String = Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect();
    AuditBuilder::new(now, importer.actor(), importer.channel(), "professionals.preview")
        .organisation(organisation.id)
        .team(team.id)
        .basis("administration")
        .reason(format!("rows={} file_sha256={digest}", report.rows.len()))
        .build()
}

impl App {
    /// Reads and checks a professionals CSV file and reports what each row would do,
    /// writing nothing but its audit event. A coordinator who may not import gets
    /// [`AppError::Forbidden`] (audited); an unknown organisation or team
    /// [`AppError::NotFound`]; a closed team [`AppError::TeamRule`]. Problems with the file
    /// are in the report. A coordinator's report says only what their organisation may
    /// know: [`RowOutcome::Invited`] for every address that is not an account of the
    /// organisation alone, whether or not anyone has it.
    pub fn preview_professionals_csv(
        &self,
        importer: &Importer<'_>,
        organisation: &OrganisationCode,
        team: &TeamAlias,
        bytes: &[u8],
    ) -> AppResult<CsvReport> {
        self.professionals_csv(importer, organisation, team, bytes, false)
    }

    /// Applies a professionals CSV file: every valid row, in one transaction, with an audit
    /// event per account, membership and invitation created and an email per person (an
    /// activation link for a new account, a notice for an existing one, an invitation to
    /// answer for an account that is not the coordinator's organisation's alone). Rows with
    /// problems are reported and leave nothing behind; a file-level problem applies
    /// nothing. The same file imported again changes nothing.
    pub fn import_professionals_csv(
        &self,
        importer: &Importer<'_>,
        organisation: &OrganisationCode,
        team: &TeamAlias,
        bytes: &[u8],
    ) -> AppResult<CsvReport> {
        self.professionals_csv(importer, organisation, team, bytes, true)
    }

    fn professionals_csv(
        &self,
        importer: &Importer<'_>,
        code: &OrganisationCode,
        alias: &TeamAlias,
        bytes: &[u8],
        write: bool,
    ) -> AppResult<CsvReport> {
        let read = read_file(bytes);
        let now = self.now();
        let by_invitation = matches!(importer, Importer::Coordinator(_));
        let work = |tx: &mut Tx<'_>| -> AppResult<AppResult<CsvReport>> {
            let organisation = organisation_by_code(tx, code)?;
            let team = team_by_alias(tx, &organisation, alias)?;
            if let Err(refusal) = authorise(tx, importer, &organisation, &team, now)? {
                return Ok(Err(refusal));
            }
            if team.status == TeamStatus::Closed {
                return Err(AppError::TeamRule(TeamRuleViolation::TeamClosed));
            }
            let report = match &read {
                Ok(rows) => {
                    let plans = plan(tx, importer, &organisation, &team, rows)?;
                    if write {
                        apply(tx, importer, &organisation, &team, rows, &plans, now)?;
                    }
                    report(rows, plans, write, by_invitation)
                }
                Err(problems) => CsvReport { by_invitation, ..CsvReport::unusable(problems.clone()) },
            };
            if !write {
                tx.audit(preview_event(importer, &organisation, &team, bytes, &report, now));
            }
            Ok(Ok(report))
        };
        let outcome = if write { self.store.write(work) } else { self.store.read_audited(work) };
        outcome.and_then(|report| report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<ReadRow> {
        read_file(text.as_bytes()).unwrap_or_else(|problems| panic!("{problems:?}"))
    }

    fn file_problems(bytes: &[u8]) -> Vec<String> {
        read_file(bytes).expect_err("a file-level problem").iter().map(ToString::to_string).collect()
    }

    fn reasons(row: &ReadRow) -> String {
        row.checked.as_ref().err().map(|reasons| reasons.join("; ")).unwrap_or_default()
    }

    #[test]
    fn reads_quoted_fields_with_commas_quotes_and_line_breaks() {
        let records =
            read_records("a,\"b, c\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",x,\r\n\r\nlast,\"\",y", 10).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].fields, ["a", "b, c", "say \"hi\""]);
        assert_eq!((records[0].line, records[1].line, records[2].line), (1, 2, 5));
        assert_eq!(records[1].fields, ["two\nlines", "x", ""]);
        assert_eq!(records[2].fields, ["last", "", "y"]);
    }

    #[test]
    fn line_endings_of_every_kind_and_blank_lines() {
        let records = read_records("h\rone\n\n,,\r\ntwo\r\n   \nthree", 10).unwrap();
        let lines: Vec<(usize, &str)> = records.iter().map(|r| (r.line, r.fields[0].as_str())).collect();
        assert_eq!(lines, [(1, "h"), (2, "one"), (5, "two"), (7, "three")]);
    }

    #[test]
    fn a_quote_never_closed_is_a_file_problem_at_its_line() {
        let problem = read_records("h\nok\n\"open,\nmore\n", 10).unwrap_err();
        assert_eq!(problem.line, Some(3));
        assert!(problem.message.contains("closing quote"), "{problem}");
        // A line's quote left open at the end of a longer file too.
        let problem = read_records("h\nok,\"fine\"\nname,\"open\nnext,row\nlast,row\n", 10).unwrap_err();
        assert_eq!(problem.line, Some(3));
    }

    #[test]
    fn headers_match_without_case_spaces_underscores_or_hyphens() {
        let read = rows(
            "EMAIL,Given_Name,family-name,JobTitle, Professional Registration Number ,ROLE\n\
             a@example.org,Ann,Lee,Nurse,NMC 12A3456E,Coordinator\n",
        );
        let valid = read[0].checked.as_ref().unwrap();
        assert_eq!((valid.email.as_str(), valid.name.as_str()), ("a@example.org", "Ann Lee"));
        assert_eq!(valid.role, MembershipRole::Coordinator);
        let read = rows("email address,first name,surname\na@example.org,Ann,Lee\n");
        assert_eq!(read[0].checked.as_ref().unwrap().role, MembershipRole::Professional);
    }

    #[test]
    fn header_problems_name_the_columns() {
        let problems = file_problems(b"email,given name,department,grade\na@example.org,Ann,x,y\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 1: unknown columns \"department\", \"grade\""), "{problems:?}");
        assert!(problems[1].contains("missing required column family name"), "{problems:?}");
        let problems = file_problems(b"a@example.org,Ann,Lee\n");
        assert!(problems.iter().any(|p| p.contains("missing required columns email, given name, family name")));
        let problems = file_problems(b"email,given name,family name,E-mail\n");
        assert!(problems[0].contains("\"email\" appears twice (columns 1 and 4)"), "{problems:?}");
        assert_eq!(
            file_problems(b""),
            [
                "the file is empty: it needs a header row (email,given name,family name,job title,professional registration number,role) and a row per person"
            ]
        );
        assert_eq!(
            file_problems(b"email,given name,family name\n\n"),
            ["the file has a header row but no rows under it"]
        );
    }

    #[test]
    fn encodings() {
        let with_bom = rows("\u{feff}email,given name,family name\na@example.org,Zoë,Ørsted\n");
        assert_eq!(with_bom[0].checked.as_ref().unwrap().name.as_str(), "Zoë Ørsted");
        let mut latin1 = b"email,given name,family name\na@example.org,Ann,Lee\nb@example.org,Zo".to_vec();
        latin1.extend([0xEB, b',', b'L', b'\n']);
        assert_eq!(
            file_problems(&latin1),
            ["line 3: is not valid UTF-8 text: save the file as \"CSV UTF-8\" and upload it again"]
        );
        assert!(file_problems(&[0xFF, 0xFE, b'e', 0])[0].contains("UTF-16"));
    }

    #[test]
    fn row_problems_are_specific() {
        let long = "x".repeat(201);
        let text = format!(
            "email,given name,family name,job title,professional registration number,role\n\
             not-an-email,Ann,Lee,,,\n\
             b@example.org,,Lee,,,\n\
             c@example.org,Cy,Lee,{long},,\n\
             d@example.org,Di,Lee,,GMC/123,\n\
             e@example.org,Ed,Lee,,,admin\n\
             f@example.org,Fi,Lee,,,,extra\n\
             B@Example.org,Bo,Lee,,,\n\
             b@example.org,Bea,Lee,,,\n"
        );
        let read = rows(&text);
        assert!(reasons(&read[0]).contains("email: \"not-an-email\" is not an email address"), "{}", reasons(&read[0]));
        assert_eq!(reasons(&read[1]), "given name: missing");
        assert_eq!(reasons(&read[2]), "job title: must be at most 200 characters");
        assert!(reasons(&read[3]).contains("only letters, digits, spaces and hyphens"));
        assert!(reasons(&read[4]).starts_with("role: \"admin\" must be professional or coordinator"));
        assert!(reasons(&read[5]).starts_with("has 7 values but the header has 6 columns"));
        // b@ is on line 3 (refused for its name): on lines 8 and 9 it is a duplicate.
        assert_eq!(reasons(&read[6]), "email: b@example.org is also on line 3 (one row per person)");
        assert_eq!(reasons(&read[7]), "email: b@example.org is also on line 3 (one row per person)");
        assert_eq!(read.iter().map(|row| row.line).collect::<Vec<_>>(), [2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(read[6].email_as_typed, "B@Example.org");
    }

    #[test]
    fn at_most_fifty_thousand_rows() {
        let mut text = String::from("email,given name,family name\n");
        for n in 0..MAX_ROWS {
            text.push_str(&format!("p{n}@example.org,Pat,Lee\n"));
        }
        assert_eq!(rows(&text).len(), MAX_ROWS);
        text.push_str("one.more@example.org,Pat,Lee\n");
        assert!(file_problems(text.as_bytes())[0].starts_with("the file has more than 50,000 rows"));
    }

    #[test]
    fn reports_render_as_csv_and_summaries() {
        assert_eq!(
            (thousands(0), thousands(999), thousands(9998), thousands(1_234_567)),
            ("0".to_owned(), "999".to_owned(), "9,998".to_owned(), "1,234,567".to_owned())
        );
        let report = CsvReport {
            applied: true,
            by_invitation: false,
            file_problems: vec![],
            rows: vec![
                RowReport { line: 2, email: "a@example.org".into(), role: None, outcome: RowOutcome::Created },
                RowReport {
                    line: 3,
                    email: "=cmd".into(),
                    role: None,
                    outcome: RowOutcome::Error(vec!["email: \"=cmd\" is bad".into(), "given name: missing".into()]),
                },
            ],
            counts: CsvCounts {
                created: 9998,
                added_to_team: 1,
                already_in_team: 0,
                errors: 1,
                ..CsvCounts::default()
            },
        };
        assert_eq!(report.summary(), "created 9,998, added to team 1, already in team 0, errors 1");
        assert_eq!(
            report.to_csv(),
            "line,email,outcome,detail\r\n2,a@example.org,created,\r\n3,'=cmd,error,\"email: \"\"=cmd\"\" is bad; given name: missing\"\r\n"
        );
        let preview = CsvReport { applied: false, ..report.clone() };
        assert_eq!(preview.summary(), "would create 9,998, would add to team 1, already in team 0, errors 1");
        // A coordinator's counts invitations, never accounts created.
        let coordinators = CsvReport {
            by_invitation: true,
            counts: CsvCounts { invited: 3, added_to_team: 1, already_invited: 2, errors: 1, ..CsvCounts::default() },
            ..report
        };
        assert_eq!(
            coordinators.summary(),
            "invited 3, added to team 1, already in team 0, already invited 2, errors 1"
        );
        let preview = CsvReport { applied: false, ..coordinators };
        assert_eq!(
            preview.summary(),
            "would invite 3, would add to team 1, already in team 0, already invited 2, errors 1"
        );
        assert_eq!(RowOutcome::Invited.label(false), "would be invited");
        assert_eq!(RowOutcome::Invited.detail().as_deref(), Some(INVITED));
    }
}
