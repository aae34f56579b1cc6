//! Between rows and domain values: the column lists the queries share, a row read as a
//! domain value, a domain value's parameters, and the stored codes (labels as bits).

use std::time::Duration;

use kith_core::audit::{ChainedEvent, StoredAuditRecord};
use kith_core::consent::LinkBasis;
use kith_core::model::*;
use kith_core::patient::{Demographics, EntryKind, NhsNumber, RegistrationStatus, Sex};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind, TeamStatus};
use kith_core::text::{EmailAddress, MobileNumber, Name, OrganisationCode, PostalAddress, Reason, TeamAlias, Title};
use kith_core::*;

use crate::error::StoreError;
use crate::value::{Param, Row};

pub(super) fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |error| StoreError::corrupt(format!("stored {what} is invalid: {error}"))
}

pub(super) fn coded<T>(what: &'static str, code: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(code).ok_or_else(|| StoreError::corrupt(format!("stored {what} {code:?} is unknown")))
}

pub(super) fn labels(bits: i64) -> Result<LabelSet, StoreError> {
    u8::try_from(bits)
        .ok()
        .and_then(LabelSet::from_bits)
        .ok_or_else(|| StoreError::corrupt(format!("stored label set {bits} is invalid")))
}

/// The bit stored for one entry label.
pub(super) fn label_bit(label: PrivacyLabel) -> i64 {
    i64::from(LabelSet::EMPTY.with(label).bits())
}

pub(super) fn entry_label(bits: Option<i64>) -> Result<Option<PrivacyLabel>, StoreError> {
    bits.map(|bits| {
        let set = labels(bits)?;
        let mut iter = set.iter();
        match (iter.next(), iter.next()) {
            (Some(label), None) => Ok(label),
            _ => Err(StoreError::corrupt(format!("stored entry label {bits} is not one label"))),
        }
    })
    .transpose()
}

macro_rules! organisation_columns {
    () => {
        "id, code, name, break_glass_seconds, created_at"
    };
}
macro_rules! team_columns {
    () => {
        "id, organisation_id, kind, name, alias, status, default_labels, created_at"
    };
}
macro_rules! account_columns {
    () => {
        "id, email, name, status, created_at"
    };
}
macro_rules! patient_columns {
    () => {
        "id, nhs_number, family_name, given_name, birth_date, sex, email, mobile, registration, account_id, sharing_disabled, merged_into, created_at, updated_at, address"
    };
}
macro_rules! care_link_columns {
    () => {
        "patient_id, team_id, labels, basis, changed_by, linked_at, updated_at, discharged_at"
    };
}
macro_rules! entry_columns {
    () => {
        "id, patient_id, kind, label, authored_team_id, author_account_id, effective_at, recorded_at, title, body, version, status, source_key, source_message_id, ends_at"
    };
}
macro_rules! grant_columns {
    () => {
        "id, patient_id, account_id, team_id, reason, started_at, expires_at, ended_at"
    };
}
macro_rules! audit_columns {
    () => {
        "seq, at, actor_kind, actor_account_id, actor_name, channel, organisation_id, acting_team_id, patient_id, action, outcome, basis, entry_kinds, labels, subject, reason, prev_hash, hash"
    };
}
pub(super) use account_columns;
pub(super) use audit_columns;
pub(super) use care_link_columns;
pub(super) use entry_columns;
pub(super) use grant_columns;
pub(super) use organisation_columns;
pub(super) use patient_columns;
pub(super) use team_columns;

/// A patient record's values as stored, in the order of `patient_columns!()`.
pub(super) struct PatientRow<'p> {
    patient: &'p Patient,
    birth_date: String,
    address: Option<String>,
}

impl<'p> PatientRow<'p> {
    pub(super) fn of(patient: &'p Patient) -> Self {
        PatientRow {
            patient,
            birth_date: patient.demographics.birth_date.to_string(),
            address: patient.demographics.address.as_ref().map(PostalAddress::joined),
        }
    }

    pub(super) fn params<'r>(&'r self, params: &mut Vec<Param<'r>>) {
        let (patient, d) = (self.patient, &self.patient.demographics);
        params.extend([
            patient.id.into(),
            patient.nhs_number.as_ref().map(NhsNumber::as_str).into(),
            d.family_name.as_str().into(),
            d.given_name.as_str().into(),
            Param::Text(&self.birth_date),
            d.sex.code().into(),
            d.email.as_ref().map(EmailAddress::as_str).into(),
            d.mobile.as_ref().map(MobileNumber::as_str).into(),
            patient.registration.code().into(),
            patient.account.into(),
            patient.sharing_disabled.into(),
            patient.merged_into.into(),
            patient.created_at.into(),
            patient.updated_at.into(),
            Param::from(self.address.as_deref()),
        ]);
    }
}

/// A care link's values, in the order of `care_link_columns!()`.
pub(super) fn care_link_params<'l>(link: &'l CareLink, params: &mut Vec<Param<'l>>) {
    params.extend([
        link.patient.into(),
        link.team.into(),
        Param::Int(i64::from(link.labels.bits())),
        link.basis.code().into(),
        link.changed_by.into(),
        link.linked_at.into(),
        link.updated_at.into(),
        link.discharged_at.into(),
    ]);
}

pub(super) fn organisation_from(row: &Row) -> Result<Organisation, StoreError> {
    Ok(Organisation {
        id: OrganisationId::from_uuid(row.uuid(0)?),
        code: OrganisationCode::parse(row.text(1)?).map_err(corrupt("organisation code"))?,
        name: Name::parse("name", row.text(2)?).map_err(corrupt("organisation name"))?,
        break_glass_duration: Duration::from_secs(u64::try_from(row.int(3)?).map_err(corrupt("duration"))?),
        created_at: row.timestamp(4)?,
    })
}

pub(super) fn team_from(row: &Row) -> Result<Team, StoreError> {
    Ok(Team {
        id: TeamId::from_uuid(row.uuid(0)?),
        organisation: OrganisationId::from_uuid(row.uuid(1)?),
        kind: coded("team kind", row.text(2)?, TeamKind::from_code)?,
        name: Name::parse("name", row.text(3)?).map_err(corrupt("team name"))?,
        alias: TeamAlias::parse(row.text(4)?).map_err(corrupt("team alias"))?,
        status: coded("team status", row.text(5)?, TeamStatus::from_code)?,
        default_labels: labels(row.int(6)?)?,
        created_at: row.timestamp(7)?,
    })
}

pub(super) fn account_from(row: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::from_uuid(row.uuid(0)?),
        email: EmailAddress::parse(row.text(1)?).map_err(corrupt("email"))?,
        name: Name::parse("name", row.text(2)?).map_err(corrupt("account name"))?,
        status: coded("account status", row.text(3)?, AccountStatus::from_code)?,
        created_at: row.timestamp(4)?,
    })
}

pub(super) fn membership_from(row: &Row, offset: usize) -> Result<Membership, StoreError> {
    Ok(Membership {
        account: AccountId::from_uuid(row.uuid(offset)?),
        team: TeamId::from_uuid(row.uuid(offset + 1)?),
        role: coded("role", row.text(offset + 2)?, MembershipRole::from_code)?,
        status: coded("membership status", row.text(offset + 3)?, MembershipStatus::from_code)?,
    })
}

/// The parameters of a page of patients in (family name, given name, id) order after
/// `after` (the last of the page before): `(? OR family_name > ? OR (family_name = ? AND
/// (given_name > ? OR (given_name = ? AND id > ?))))`.
pub(super) fn after_patient(after: Option<&Patient>) -> [Param<'_>; 6] {
    let (family, given) = match after {
        Some(patient) => (patient.demographics.family_name.as_str(), patient.demographics.given_name.as_str()),
        None => ("", ""),
    };
    [
        after.is_none().into(),
        Param::Text(family),
        Param::Text(family),
        Param::Text(given),
        Param::Text(given),
        after.map(|patient| patient.id).into(),
    ]
}

/// A `LIKE … ESCAPE '\\'` pattern for text starting with `prefix`, any case (the column is
/// compared lower-cased): its wildcards are escaped.
pub(super) fn like_prefix(prefix: &str) -> String {
    format!("{}%", prefix.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

pub(super) fn patient_from(row: &Row) -> Result<Patient, StoreError> {
    Ok(Patient {
        id: PatientId::from_uuid(row.uuid(0)?),
        nhs_number: row.opt_text(1)?.map(NhsNumber::parse).transpose().map_err(corrupt("NHS number"))?,
        demographics: Demographics {
            family_name: Name::parse("family name", row.text(2)?).map_err(corrupt("family name"))?,
            given_name: Name::parse("given name", row.text(3)?).map_err(corrupt("given name"))?,
            birth_date: Date::parse(row.text(4)?).map_err(corrupt("birth date"))?,
            sex: coded("sex", row.text(5)?, Sex::from_code)?,
            email: row.opt_text(6)?.map(EmailAddress::parse).transpose().map_err(corrupt("email"))?,
            mobile: row.opt_text(7)?.map(MobileNumber::parse).transpose().map_err(corrupt("mobile"))?,
            address: row.opt_text(14)?.map(PostalAddress::parse).transpose().map_err(corrupt("address"))?,
        },
        registration: coded("registration", row.text(8)?, RegistrationStatus::from_code)?,
        account: row.opt_uuid(9)?.map(AccountId::from_uuid),
        sharing_disabled: row.bool(10)?,
        merged_into: row.opt_uuid(11)?.map(PatientId::from_uuid),
        created_at: row.timestamp(12)?,
        updated_at: row.timestamp(13)?,
    })
}

pub(super) fn care_link_from(row: &Row) -> Result<CareLink, StoreError> {
    Ok(CareLink {
        patient: PatientId::from_uuid(row.uuid(0)?),
        team: TeamId::from_uuid(row.uuid(1)?),
        labels: labels(row.int(2)?)?,
        basis: coded("link basis", row.text(3)?, LinkBasis::from_code)?,
        changed_by: row.opt_uuid(4)?.map(AccountId::from_uuid),
        linked_at: row.timestamp(5)?,
        updated_at: row.timestamp(6)?,
        discharged_at: row.opt_timestamp(7)?,
    })
}

pub(super) fn entry_from(row: &Row) -> Result<Entry, StoreError> {
    Ok(Entry {
        id: EntryId::from_uuid(row.uuid(0)?),
        patient: PatientId::from_uuid(row.uuid(1)?),
        kind: coded("entry kind", row.text(2)?, EntryKind::from_code)?,
        label: entry_label(row.opt_int(3)?)?,
        authored_by: TeamId::from_uuid(row.uuid(4)?),
        author_account: row.opt_uuid(5)?.map(AccountId::from_uuid),
        effective_at: row.timestamp(6)?,
        recorded_at: row.timestamp(7)?,
        title: Title::parse(row.text(8)?).map_err(corrupt("title"))?,
        body: row.text(9)?.to_owned(),
        version: row.int(10)?,
        status: row.opt_text(11)?.map(|code| coded("entry status", code, EntryStatus::from_code)).transpose()?,
        source_key: row.opt_text(12)?.map(str::to_owned),
        source_message: row.opt_uuid(13)?.map(Hl7MessageId::from_uuid),
        ends_at: row.opt_timestamp(14)?,
    })
}

pub(super) fn grant_from(row: &Row) -> Result<BreakGlassGrant, StoreError> {
    Ok(BreakGlassGrant {
        id: BreakGlassId::from_uuid(row.uuid(0)?),
        patient: PatientId::from_uuid(row.uuid(1)?),
        account: AccountId::from_uuid(row.uuid(2)?),
        team: TeamId::from_uuid(row.uuid(3)?),
        reason: Reason::from_stored(row.text(4)?).map_err(corrupt("reason"))?,
        started_at: row.timestamp(5)?,
        expires_at: row.timestamp(6)?,
        ended_at: row.opt_timestamp(7)?,
    })
}

pub(super) fn hash_from(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::corrupt(format!("stored hash has {} bytes, not 32", bytes.len())))
}

pub(super) fn audit_from(row: &Row) -> Result<ChainedEvent, StoreError> {
    Ok(ChainedEvent {
        seq: row.int(0)?,
        record: StoredAuditRecord {
            at: row.timestamp(1)?,
            actor_kind: row.text(2)?.to_owned(),
            actor_account: row.opt_uuid(3)?.map(AccountId::from_uuid),
            actor_name: row.opt_text(4)?.map(str::to_owned),
            channel: row.text(5)?.to_owned(),
            organisation: row.opt_uuid(6)?.map(OrganisationId::from_uuid),
            acting_team: row.opt_uuid(7)?.map(TeamId::from_uuid),
            patient: row.opt_uuid(8)?.map(PatientId::from_uuid),
            action: row.text(9)?.to_owned(),
            outcome: row.text(10)?.to_owned(),
            basis: row.opt_text(11)?.map(str::to_owned),
            entry_kinds: row.text(12)?.to_owned(),
            labels: u8::try_from(row.int(13)?).map_err(corrupt("audit labels"))?,
            subject: row.opt_text(14)?.map(str::to_owned),
            reason: row.opt_text(15)?.map(str::to_owned),
        },
        prev_hash: hash_from(row.bytes(16)?)?,
        hash: hash_from(row.bytes(17)?)?,
    })
}
