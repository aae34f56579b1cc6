//! Which integration a sender is: the credentials of an HL7 connection or request decide
//! it, never what the message claims. An MLLP connection is bound, before its first message
//! is applied, by its TLS client certificate or by its source address; a `POST /hl7/v2` by
//! its bearer token. Every message must then name its integration's facility in MSH-4.

use std::fmt;
use std::net::IpAddr;

use crate::ids::IntegrationId;
use crate::time::Timestamp;

/// A range of source addresses: an address with a prefix length (`10.1.2.0/24`,
/// `fd00::/8`), or one address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or a range such as 10.1.2.0/24 or fd00::/8")]
pub struct InvalidAddressRange(pub String);

fn bits(address: IpAddr) -> (u128, u8) {
    match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all = if width == 32 { u128::from(u32::MAX) } else { u128::MAX };
        all & !((1u128 << (width - prefix)) - 1)
    }
}

impl AddressRange {
    pub fn parse(text: &str) -> Result<Self, InvalidAddressRange> {
        let invalid = || InvalidAddressRange(text.trim().to_owned());
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        // An IPv4 address written as IPv6 (::ffff:a.b.c.d) is the IPv4 address.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let (value, width) = bits(address);
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= width).ok_or_else(invalid)?,
        };
        let network = value & mask(prefix, width);
        let network = match address {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(network as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(network)),
        };
        Ok(AddressRange { network, prefix })
    }

    /// Whether `address` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let (ours, width) = bits(self.network);
        let (theirs, their_width) = bits(address);
        width == their_width && theirs & mask(self.prefix, width) == ours
    }

    /// Whether two ranges share an address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// What binding needs to know of an integration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IntegrationCredentials {
    pub id: IntegrationId,
    pub revoked: bool,
    pub addresses: Vec<AddressRange>,
    /// SHA-256 of the TLS client certificate (DER) the integration connects with.
    pub certificate: Option<[u8; 32]>,
}

/// What a connection presents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectionFacts {
    pub peer: IpAddr,
    /// SHA-256 of the TLS client certificate, when one was presented (and proved).
    pub certificate: Option<[u8; 32]>,
}

/// Why a connection is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BindRefusal {
    /// The certificate is no integration's.
    UnknownCertificate,
    /// The certificate's integration does not allow this address.
    AddressNotAllowed,
    /// No integration allows this address (without a certificate).
    NoIntegrationForAddress,
    /// More than one integration allows this address and no certificate says which.
    Ambiguous,
}

impl fmt::Display for BindRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindRefusal::UnknownCertificate => "the client certificate is no integration's",
            BindRefusal::AddressNotAllowed => "the client certificate's integration does not allow this address",
            BindRefusal::NoIntegrationForAddress => "no integration allows this source address",
            BindRefusal::Ambiguous => "several integrations allow this source address",
        })
    }
}

/// Which integration an MLLP connection is. A client certificate names its integration
/// (and that integration's address list, when it has one, must allow the address); without
/// one, the address must be allowed by exactly one integration that has no certificate.
/// Revoked integrations bind nothing.
pub fn bind_connection(
    connection: &ConnectionFacts,
    integrations: &[IntegrationCredentials],
) -> Result<IntegrationId, BindRefusal> {
    let live = || integrations.iter().filter(|integration| !integration.revoked);
    if let Some(certificate) = connection.certificate {
        let integration = live()
            .find(|integration| integration.certificate == Some(certificate))
            .ok_or(BindRefusal::UnknownCertificate)?;
        if !integration.addresses.is_empty()
            && !integration.addresses.iter().any(|range| range.contains(connection.peer))
        {
            return Err(BindRefusal::AddressNotAllowed);
        }
        return Ok(integration.id);
    }
    let mut allowed = live().filter(|integration| {
        integration.certificate.is_none() && integration.addresses.iter().any(|range| range.contains(connection.peer))
    });
    match (allowed.next(), allowed.next()) {
        (Some(integration), None) => Ok(integration.id),
        (None, _) => Err(BindRefusal::NoIntegrationForAddress),
        (Some(_), Some(_)) => Err(BindRefusal::Ambiguous),
    }
}

/// Whether an integration's bearer token may be used at `now`.
pub fn token_is_live(revoked_at: Option<Timestamp>, expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|expires| now < expires)
}

/// Whether a message's MSH-4 (its first component, the namespace id) names the
/// integration's facility: compared without surrounding spaces or case.
pub fn facility_matches(integration_facility: &str, msh4: &str) -> bool {
    integration_facility.trim().eq_ignore_ascii_case(msh4.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn range(text: &str) -> AddressRange {
        AddressRange::parse(text).unwrap()
    }

    #[test]
    fn address_ranges() {
        assert_eq!(range("10.1.2.77/24").to_string(), "10.1.2.0/24");
        assert_eq!(range("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(range("::1").to_string(), "::1/128");
        assert_eq!(range("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
        assert!(range("10.1.2.0/24").contains("10.1.2.200".parse().unwrap()));
        assert!(!range("10.1.2.0/24").contains("10.1.3.1".parse().unwrap()));
        assert!(range("10.1.2.0/24").contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(range("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(!range("0.0.0.0/0").contains("::1".parse().unwrap()));
        assert!(range("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(range("10.0.0.0/8").overlaps(&range("10.9.9.9")));
        assert!(!range("10.0.0.0/8").overlaps(&range("11.0.0.0/8")));
        for bad in ["", "10.1.2", "10.1.2.0/33", "::/129", "example.org", "10.0.0.0/x"] {
            assert!(AddressRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binding_a_connection() {
        let id = |n| IntegrationId::from_uuid(Uuid::from_u128(n));
        let by_address = IntegrationCredentials {
            id: id(1),
            revoked: false,
            addresses: vec![range("10.0.0.0/24")],
            certificate: None,
        };
        let by_certificate =
            IntegrationCredentials { id: id(2), revoked: false, addresses: vec![], certificate: Some([7; 32]) };
        let certificate_and_address = IntegrationCredentials {
            id: id(3),
            revoked: false,
            addresses: vec![range("192.0.2.0/24")],
            certificate: Some([9; 32]),
        };
        let revoked = IntegrationCredentials { id: id(4), revoked: true, ..by_address.clone() };
        let all = [by_address.clone(), by_certificate, certificate_and_address];
        let two_for_one_address = [by_address.clone(), IntegrationCredentials { id: id(5), ..by_address.clone() }];
        let at = |peer: &str, certificate| ConnectionFacts { peer: peer.parse().unwrap(), certificate };
        type Row<'a> = (&'a str, ConnectionFacts, &'a [IntegrationCredentials], Result<IntegrationId, BindRefusal>);
        let rows: Vec<Row<'_>> = vec![
            ("an allowed address", at("10.0.0.5", None), &all, Ok(id(1))),
            ("an address no integration allows", at("10.0.1.5", None), &all, Err(BindRefusal::NoIntegrationForAddress)),
            ("a pinned certificate from anywhere", at("203.0.113.1", Some([7; 32])), &all, Ok(id(2))),
            ("a pinned certificate from its addresses", at("192.0.2.1", Some([9; 32])), &all, Ok(id(3))),
            (
                "a pinned certificate from elsewhere",
                at("10.0.0.5", Some([9; 32])),
                &all,
                Err(BindRefusal::AddressNotAllowed),
            ),
            ("an unknown certificate", at("10.0.0.5", Some([1; 32])), &all, Err(BindRefusal::UnknownCertificate)),
            (
                "an address of an integration that needs its certificate",
                at("192.0.2.1", None),
                &all,
                Err(BindRefusal::NoIntegrationForAddress),
            ),
            (
                "a revoked integration",
                at("10.0.0.5", None),
                std::slice::from_ref(&revoked),
                Err(BindRefusal::NoIntegrationForAddress),
            ),
            (
                "two integrations allow the address",
                at("10.0.0.5", None),
                &two_for_one_address,
                Err(BindRefusal::Ambiguous),
            ),
        ];
        for (name, connection, integrations, expected) in rows {
            assert_eq!(bind_connection(&connection, integrations), expected, "{name}");
        }
    }

    #[test]
    fn tokens_and_facilities() {
        let now = Timestamp::from_micros(1_000);
        assert!(token_is_live(None, None, now));
        assert!(token_is_live(None, Some(Timestamp::from_micros(1_001)), now));
        assert!(!token_is_live(None, Some(now), now));
        assert!(!token_is_live(Some(now), None, now));
        assert!(facility_matches("RXH-PAS", " rxh-pas "));
        assert!(!facility_matches("RXH-PAS", "RXH-LAB"));
    }
}
