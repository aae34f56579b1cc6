//! Typed identifiers. Each wraps a UUID (version 7 when Kith makes it) so that a team id
//! can never be passed where a patient id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| InvalidId)
            }
        }
    };
}

/// The text is not a Kith identifier (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid identifier (expected a UUID such as 0191d2f0-8c1e-7cc1-9d1e-2f5b7a1c9e00)")]
pub struct InvalidId;

id_type!(
    /// An organisation (a hospital trust, a practice, a council).
    OrganisationId
);
id_type!(
    /// A team within an organisation.
    TeamId
);
id_type!(
    /// A login: one per person, across teams, organisations and their own record.
    AccountId
);
id_type!(
    /// A patient's record.
    PatientId
);
id_type!(
    /// One entry in a patient's record.
    EntryId
);
id_type!(
    /// A break-the-glass grant.
    BreakGlassId
);
id_type!(
    /// An organisation's HL7 integration: a sending facility and its credentials.
    IntegrationId
);
id_type!(
    /// A stored inbound HL7 message.
    Hl7MessageId
);
id_type!(
    /// An API token: a bearer secret acting for one account.
    ApiTokenId
);
id_type!(
    /// A coordinator's invitation to join their team, waiting for the address's holder.
    MembershipInvitationId
);
