//! The records Kith keeps, as the store hands them over.

use std::time::Duration;

use crate::consent::LinkBasis;
use crate::document::DocumentType;
use crate::ids::{AccountId, ApiTokenId, BreakGlassId, EntryId, OrganisationId, PatientId, TeamId};
use crate::label::{LabelSet, PrivacyLabel};
use crate::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, RegistrationStatus};
use crate::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind, TeamStatus};
use crate::text::{EmailAddress, Name, OrganisationCode, Reason, TeamAlias, Title};
use crate::time::Timestamp;

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Organisation {
    pub id: OrganisationId,
    pub code: OrganisationCode,
    pub name: Name,
    pub break_glass_duration: Duration,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Team {
    pub id: TeamId,
    pub organisation: OrganisationId,
    pub kind: TeamKind,
    pub name: Name,
    pub alias: TeamAlias,
    pub status: TeamStatus,
    pub default_labels: LabelSet,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Account {
    pub id: AccountId,
    pub email: EmailAddress,
    pub name: Name,
    pub status: AccountStatus,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Membership {
    pub account: AccountId,
    pub team: TeamId,
    pub role: MembershipRole,
    pub status: MembershipStatus,
}

impl Membership {
    /// What the access and coordination rules need of it.
    pub fn facts(&self) -> crate::access::MembershipFacts {
        crate::access::MembershipFacts { role: self.role, status: self.status }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Patient {
    pub id: PatientId,
    pub nhs_number: Option<NhsNumber>,
    pub demographics: Demographics,
    pub registration: RegistrationStatus,
    pub account: Option<AccountId>,
    pub sharing_disabled: bool,
    pub merged_into: Option<PatientId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PatientIdentifier {
    pub organisation: OrganisationId,
    pub identifier: LocalIdentifier,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CareLink {
    pub patient: PatientId,
    pub team: TeamId,
    pub labels: LabelSet,
    pub basis: LinkBasis,
    /// The account that made the last change, when it was made by a person with an account.
    pub changed_by: Option<AccountId>,
    pub linked_at: Timestamp,
    pub updated_at: Timestamp,
    pub discharged_at: Option<Timestamp>,
}

impl CareLink {
    pub fn is_active(&self) -> bool {
        self.discharged_at.is_none()
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub id: EntryId,
    pub patient: PatientId,
    pub kind: EntryKind,
    pub label: Option<PrivacyLabel>,
    pub authored_by: TeamId,
    pub author_account: Option<AccountId>,
    pub effective_at: Timestamp,
    pub recorded_at: Timestamp,
    pub title: Title,
    pub body: String,
    pub version: i64,
    pub status: Option<EntryStatus>,
    /// Where a feed's entry came from, so that a later message finds it: e.g. `ORU:<order
    /// number>`, `MDM:<document number>`, `SIU:<placer appointment id>`.
    pub source_key: Option<String>,
    /// The stored HL7 message that wrote this version.
    pub source_message: Option<crate::ids::Hl7MessageId>,
    /// When the entry's period ends, where it has one (an appointment's end); never before
    /// `effective_at`.
    pub ends_at: Option<Timestamp>,
}

/// The uploaded file of a `document` entry. Who may see it is who may see the entry. Its
/// `Debug` gives the content's length, not the content (up to 10 MiB of health data).
#[derive(Clone, PartialEq, Eq)]
pub struct DocumentFile {
    /// What the content is ([`crate::document::sniff_document`]), never what the sender said.
    pub document_type: DocumentType,
    /// As given, sanitised ([`crate::document::sanitise_file_name`]).
    pub file_name: String,
    /// SHA-256 of `content`.
    pub sha256: [u8; 32],
    pub content: Vec<u8>,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for DocumentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentFile")
            .field("document_type", &self.document_type)
            .field("file_name", &self.file_name)
            .field("content_bytes", &self.content.len())
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

crate::team::coded_enum!(
    /// Where an entry stands: results and documents are preliminary, final or corrected;
    /// appointments booked, cancelled or not attended.
    EntryStatus {
        Preliminary => "preliminary",
        Final => "final",
        Corrected => "corrected",
        Booked => "booked",
        Cancelled => "cancelled",
        NoShow => "noshow",
    }
);

/// One observation of a result (an HL7 OBX), as sent.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Observation {
    pub code: String,
    pub code_system: String,
    pub name: String,
    /// HL7 value type: NM, ST, TX, FT, CE, SN…
    pub value_type: String,
    pub value: String,
    pub units: String,
    pub reference_range: String,
    /// Abnormal flags, `~`-joined (H, L, A…).
    pub flags: String,
    /// OBX-11: F final, C corrected, P preliminary…
    pub status: String,
    pub observed_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BreakGlassGrant {
    pub id: BreakGlassId,
    pub patient: PatientId,
    pub account: AccountId,
    pub team: TeamId,
    pub reason: Reason,
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}

/// An organisation's HL7 integration: a sending facility (MSH-4) and its bearer token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Integration {
    pub id: crate::ids::IntegrationId,
    pub organisation: OrganisationId,
    pub name: Name,
    pub facility: String,
    pub created_at: Timestamp,
    /// Revoked integrations are refused on every transport.
    pub revoked_at: Option<Timestamp>,
    /// When the bearer token stops working, if it expires.
    pub token_expires_at: Option<Timestamp>,
    /// Source addresses an MLLP connection may bind from.
    pub allowed_addresses: Vec<crate::integration::AddressRange>,
    /// SHA-256 of the TLS client certificate an MLLP connection binds with.
    pub client_certificate_sha256: Option<[u8; 32]>,
}

impl Integration {
    /// What binding a connection needs of it.
    pub fn credentials(&self) -> crate::integration::IntegrationCredentials {
        crate::integration::IntegrationCredentials {
            id: self.id,
            revoked: self.revoked_at.is_some(),
            addresses: self.allowed_addresses.clone(),
            certificate: self.client_certificate_sha256,
        }
    }
}

crate::team::coded_enum!(
    /// What became of an inbound HL7 message.
    Hl7MessageStatus {
        /// Applied and acknowledged AA.
        Accepted => "accepted",
        /// Refused (AR): invalid, unsupported, or about a patient Kith cannot find. Kept for
        /// reprocessing.
        Rejected => "rejected",
        /// Failed inside Kith (AE); nothing of it was applied. (Kith no longer answers AE
        /// for a message it could store: such messages are held.)
        Error => "error",
        /// Kept, unapplied, for the organisation's data-quality staff: the matching rule
        /// found a conflict, or Kith could not apply it. Answered AA with a warning.
        Held => "held",
    }
);

/// A stored inbound HL7 message, without its raw bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hl7MessageRecord {
    pub id: crate::ids::Hl7MessageId,
    pub organisation: OrganisationId,
    pub integration: Option<crate::ids::IntegrationId>,
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: Option<String>,
    pub message_type: String,
    pub status: Hl7MessageStatus,
    pub ack: String,
    pub error: Option<String>,
    pub patient: Option<PatientId>,
    pub received_at: Timestamp,
    /// For a held message: the matching rule's conflict code and the records in question.
    pub conflict: Option<String>,
    pub conflict_records: Vec<PatientId>,
    /// What a person decided about a held message.
    pub resolution: Option<String>,
}

/// An API token: a bearer secret for the FHIR API acting for one account, with that
/// account's memberships as they are at each request. Only its SHA-256 is stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub account: AccountId,
    pub name: Name,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiToken {
    /// Usable now: not revoked and not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }
}
