//! Organisations, teams, accounts and memberships, and the rules that keep a team run.

use std::time::Duration;

macro_rules! coded_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stable code used in storage and on the wire.
            pub const fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
            pub fn from_code(code: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.code() == code)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}
pub(crate) use coded_enum;

coded_enum!(
    /// Every organisation has exactly one Patient Record Team, created with it.
    TeamKind {
        /// Where every record of the organisation is created; no labels by default.
        PatientRecord => "patient_record",
        Speciality => "speciality",
    }
);

coded_enum!(
    /// A team is set up, then goes live (with two active coordinators), and may close.
    TeamStatus {
        Setup => "setup",
        Live => "live",
        Closed => "closed",
    }
);

coded_enum!(
    /// A membership's role. Coordinators run a team; coordinator status grants no clinical
    /// access (DESIGN.md §3), so only a `professional` membership reads records.
    MembershipRole {
        Professional => "professional",
        Coordinator => "coordinator",
    }
);

coded_enum!(
    /// Deactivation is per team and affects no other team.
    MembershipStatus {
        Active => "active",
        Deactivated => "deactivated",
    }
);

coded_enum!(
    /// One login per person.
    AccountStatus {
        /// Created by someone else; the person has not set a password yet.
        Invited => "invited",
        Active => "active",
        /// Locked after too many failed sign-ins.
        Locked => "locked",
        Disabled => "disabled",
    }
);

/// The break-the-glass duration when an organisation has not set one.
pub const DEFAULT_BREAK_GLASS_DURATION: Duration = Duration::from_secs(4 * 60 * 60);
/// The longest break-the-glass duration an organisation may set.
pub const MAX_BREAK_GLASS_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The number of active coordinators a live team must keep.
pub const MINIMUM_COORDINATORS: usize = 2;

/// A change to a team that its rules refuse, with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamRuleViolation {
    #[error(
        "the team cannot go live with {active} active coordinator(s) ({appointed} appointed, {} not active yet): a live team needs at least {MINIMUM_COORDINATORS}, so that one can always stand in for the other. {}",
        appointed.saturating_sub(*active),
        if appointed > active {
            "A coordinator becomes active once they set their password from the link in their invitation email (and their account is not locked or disabled); appoint another coordinator if they cannot."
        } else {
            "Appoint another coordinator first (kith professional add --coordinator)."
        }
    )]
    TooFewCoordinatorsToGoLive { active: usize, appointed: usize },
    #[error(
        "this would leave the live team with {remaining} active coordinator(s): a live team needs at least {MINIMUM_COORDINATORS}. Appoint another coordinator first, then try again."
    )]
    WouldDropBelowMinimumCoordinators { remaining: usize },
    #[error("the team is {0} and cannot go live")]
    CannotGoLiveFrom(TeamStatus),
    #[error("the team is closed")]
    TeamClosed,
}

/// Whether a team in `status` with `active_coordinators` may go live. `appointed` counts the
/// coordinators appointed, active or not yet (an account that has not set its password).
pub fn check_go_live(
    status: TeamStatus,
    active_coordinators: usize,
    appointed: usize,
) -> Result<(), TeamRuleViolation> {
    match status {
        TeamStatus::Setup if active_coordinators >= MINIMUM_COORDINATORS => Ok(()),
        TeamStatus::Setup => Err(TeamRuleViolation::TooFewCoordinatorsToGoLive {
            active: active_coordinators,
            appointed: appointed.max(active_coordinators),
        }),
        other => Err(TeamRuleViolation::CannotGoLiveFrom(other)),
    }
}

/// Why an account cannot use an API token now (a token of an account that is not active is
/// never accepted), with what to do; `None` when it can.
pub fn api_token_refusal(status: AccountStatus) -> Option<&'static str> {
    match status {
        AccountStatus::Active => None,
        AccountStatus::Invited => Some(
            "has not set a password yet, so a token would never work: ask them to set it from the link in their invitation email (or send a new one), then create the token",
        ),
        AccountStatus::Locked => Some(
            "is locked after too many failed sign-ins, so a token would not work: send them a password reset, then create the token",
        ),
        AccountStatus::Disabled => {
            Some("is disabled, so a token would never work: reactivate the account first if it should have one")
        }
    }
}

/// The outcome of a check that an operator may override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permitted {
    Yes,
    /// Refused by the rule but forced by the operator; the caller must audit the override.
    Overridden(TeamRuleViolation),
}

/// Whether one active coordinator of a team may stop being one (deactivated, demoted, or
/// their account disabled). `active_coordinators` counts them before the change.
pub fn check_coordinator_leaving(
    status: TeamStatus,
    active_coordinators: usize,
    force: bool,
) -> Result<Permitted, TeamRuleViolation> {
    let remaining = active_coordinators.saturating_sub(1);
    if status != TeamStatus::Live || remaining >= MINIMUM_COORDINATORS {
        return Ok(Permitted::Yes);
    }
    let violation = TeamRuleViolation::WouldDropBelowMinimumCoordinators { remaining };
    if force { Ok(Permitted::Overridden(violation)) } else { Err(violation) }
}

/// Parses a duration such as `4h`, `30m`, `90s` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let mut total = 0u64;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("{text:?} is not a duration such as 4h, 30m or 90s")),
        };
        let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 4h, 30m or 90s"))?;
        total = total.saturating_add(value.saturating_mul(unit));
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return Err(format!("{text:?} is not a duration such as 4h, 30m or 90s"));
    }
    Ok(Duration::from_secs(total))
}

/// Checks a break-the-glass duration an organisation wants to set.
pub fn check_break_glass_duration(duration: Duration) -> Result<Duration, String> {
    if duration.is_zero() || duration > MAX_BREAK_GLASS_DURATION {
        return Err("a break-the-glass duration must be more than 0 and at most 24h".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_accounts_get_api_tokens() {
        assert_eq!(api_token_refusal(AccountStatus::Active), None);
        for status in [AccountStatus::Invited, AccountStatus::Locked, AccountStatus::Disabled] {
            assert!(
                api_token_refusal(status).is_some_and(|why| why.contains("then") || why.contains("first")),
                "{status:?}"
            );
        }
    }

    #[test]
    fn go_live_needs_two_coordinators() {
        assert_eq!(
            check_go_live(TeamStatus::Setup, 1, 1),
            Err(TeamRuleViolation::TooFewCoordinatorsToGoLive { active: 1, appointed: 1 })
        );
        assert_eq!(check_go_live(TeamStatus::Setup, 2, 2), Ok(()));
        assert_eq!(check_go_live(TeamStatus::Live, 5, 5), Err(TeamRuleViolation::CannotGoLiveFrom(TeamStatus::Live)));
        let message = check_go_live(TeamStatus::Setup, 0, 0).unwrap_err().to_string();
        assert!(message.contains("(0 appointed, 0 not active yet)"), "{message}");
        assert!(message.contains("Appoint another coordinator first"), "{message}");
        // Two appointed, one has not set a password yet: says so, and what makes them active.
        let waiting = check_go_live(TeamStatus::Setup, 1, 2).unwrap_err().to_string();
        assert!(waiting.contains("1 active coordinator(s) (2 appointed, 1 not active yet)"), "{waiting}");
        assert!(waiting.contains("once they set their password from the link in their invitation email"), "{waiting}");
    }

    #[test]
    fn a_live_team_keeps_two_coordinators_unless_forced() {
        assert_eq!(check_coordinator_leaving(TeamStatus::Live, 3, false), Ok(Permitted::Yes));
        let refused = check_coordinator_leaving(TeamStatus::Live, 2, false);
        assert_eq!(refused, Err(TeamRuleViolation::WouldDropBelowMinimumCoordinators { remaining: 1 }));
        assert!(refused.unwrap_err().to_string().contains("Appoint another coordinator first"));
        assert_eq!(
            check_coordinator_leaving(TeamStatus::Live, 2, true),
            Ok(Permitted::Overridden(TeamRuleViolation::WouldDropBelowMinimumCoordinators { remaining: 1 }))
        );
        // A team still being set up may lose coordinators freely.
        assert_eq!(check_coordinator_leaving(TeamStatus::Setup, 1, false), Ok(Permitted::Yes));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("4").is_err());
        assert!(parse_duration("four hours").is_err());
        assert!(check_break_glass_duration(Duration::from_secs(0)).is_err());
        assert!(check_break_glass_duration(Duration::from_secs(25 * 3600)).is_err());
    }
}
