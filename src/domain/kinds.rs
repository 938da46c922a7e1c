//! The closed vocabularies of the domain: error kinds, how a contact was made, where an
//! invitation stands. Each has one `as_str` for the wire and the headless protocol, so a
//! spelling lives in one place and a match over them is checked by the compiler.

use std::fmt;

/// Declares a fieldless enum whose variants have fixed snake_case wire names, with
/// `as_str`, `parse`, `ALL`, `Display` and serde as that name.
macro_rules! wire_names {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The value with this wire name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("unknown ", stringify!($name), " `{}`"), s))
                })
            }
        }
    };
}

wire_names! {
    /// The `kind` of an `error` event (docs/HEADLESS.md): what went wrong, for scripts.
    pub enum ErrorKind {
        /// A control line is not a JSON object (or not UTF-8).
        MalformedJson => "malformed_json",
        /// A control object has no `cmd`.
        MissingCmd => "missing_cmd",
        /// `cmd` names no command.
        UnknownCommand => "unknown_command",
        /// An argument is missing or has the wrong kind of value.
        BadArgument => "bad_argument",
        /// A `person_id`, `members` or `channel` argument does not follow the id grammar.
        BadId => "bad_id",
        /// A control line exceeds the limit.
        LineTooLong => "line_too_long",
        /// Only a node can do this.
        NotANode => "not_a_node",
        /// A client needs a home node to invite (it does not listen itself).
        NoHomeNode => "no_home_node",
        /// A client's short code is made by its home node, which is not connected now.
        HomeNodeOffline => "home_node_offline",
        /// A code could not be read (typo, truncation, not a code).
        InvalidCode => "invalid_code",
        /// The invitation expired.
        InviteExpired => "invite_expired",
        /// The invitation was used.
        InviteUsed => "invite_used",
        /// The invitation was revoked.
        InviteRevoked => "invite_revoked",
        /// The node never issued this invitation.
        InviteUnknown => "invite_unknown",
        /// `revoke_invite`: no such invitation here.
        UnknownInvite => "unknown_invite",
        /// `remove_contact`: no such contact.
        UnknownContact => "unknown_contact",
        /// Nothing answered at the address.
        Unreachable => "unreachable",
        /// A `wss://` node's TLS certificate is not trusted (see `--ca-file`).
        TlsUntrusted => "tls_untrusted",
        /// The peer at the address has another key or person.
        KeyMismatch => "key_mismatch",
        /// The peer did not answer in time.
        Timeout => "timeout",
        /// The pairing exchange broke.
        PairingFailed => "pairing_failed",
        /// The short code's words or the trust secret differ.
        CodeMismatch => "code_mismatch",
        /// The short code expired.
        CodeExpired => "code_expired",
        /// The short code (or the trust secret) is out of guesses.
        CodeExhausted => "code_exhausted",
        /// The node has no open short code with this number.
        CodeUnknown => "code_unknown",
        /// The node has no trust secret.
        NoTrustSecret => "no_trust_secret",
        /// The node refused us: we are not its contact.
        NotAContact => "not_a_contact",
        /// The peer closed the connection with another reason.
        Refused => "refused",
        /// The connection failed for another reason.
        ConnectionFailed => "connection_failed",
        /// We refused the peer: it is not our contact.
        PeerNotAContact => "peer_not_a_contact",
        /// The instance is shutting down.
        ShuttingDown => "shutting_down",
        /// The store failed.
        Store => "store",
        /// The disk is full.
        DiskFull => "disk_full",
        /// A QR image could not be read.
        QrUnreadable => "qr_unreadable",
        /// A QR image holds no QR code.
        QrNotFound => "qr_not_found",
        /// `--provision-node` failed.
        ProvisionFailed => "provision_failed",
        /// The provisioned node exited.
        NodeExited => "node_exited",
    }
}

wire_names! {
    /// How a contact was made.
    pub enum Via {
        /// An invitation code.
        Invite => "invite",
        /// A contact card.
        Card => "card",
        /// The provisioning parent over stdio.
        Provision => "provision",
        /// A short code checked by the PAKE.
        ShortCode => "short_code",
        /// The shared trust secret checked by the PAKE.
        TrustSecret => "trust_secret",
        /// Added by hand (tests, older stores).
        Manual => "manual",
        /// On a home node: a contact of a person whose home node this is, as that person
        /// listed it (a `vouch`); it may connect and reach its owner's channels.
        Vouched => "vouched",
    }
}

wire_names! {
    /// Where an invitation (or a short code) stands at a given time.
    pub enum InviteState {
        /// Usable.
        Open => "open",
        /// Consumed by a pairing.
        Used => "used",
        /// Revoked by its owner.
        Revoked => "revoked",
        /// Past its expiry.
        Expired => "expired",
        /// A short code out of guesses.
        Exhausted => "exhausted",
    }
}

wire_names! {
    /// Where an instance learned one address of a contact (the network view).
    pub enum EndpointSource {
        /// The profile the node sent while we accepted its invitation.
        Invitation => "invitation",
        /// A contact card we imported.
        Card => "card",
        /// The profile sent while pairing by short code or trust secret.
        Pairing => "pairing",
        /// The provisioning parent (a client and the node it started).
        Provisioning => "provisioning",
        /// A newer signed profile of the contact.
        Profile => "profile",
        /// A signed local-discovery announcement.
        Discovery => "discovery",
    }
}

wire_names! {
    /// What the dialer is doing with one address of a contact, now.
    pub enum EndpointState {
        /// The link to the contact runs over this address.
        Connected => "connected",
        /// A dial of this address is in flight.
        Dialing => "dialing",
        /// This address is dialed next, at `next_retry_at`.
        Waiting => "waiting",
        /// Not dialed now: the contact is linked another way, or another address is next.
        Idle => "idle",
        /// Replaced by a newer address; kept to show where the contact was, never dialed.
        Stale => "stale",
    }
}

wire_names! {
    /// Who can use a URL, judged by its host.
    pub enum Reach {
        /// Loopback (`localhost`, 127.0.0.0/8, ::1) or unspecified: this machine only.
        ThisMachine => "this_machine",
        /// A private or link-local address (10/8, 172.16/12, 192.168/16, 169.254/16,
        /// fc00::/7, fe80::/10, `*.local`): machines on the same network.
        LocalNetwork => "local_network",
        /// Any other host: wherever it resolves and is routed.
        Network => "network",
    }
}

impl Reach {
    /// The reach of a `ws://` or `wss://` URL (an unparsable one is `ThisMachine`: it
    /// works nowhere else either).
    pub fn of_url(url: &str) -> Reach {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty()
            || host.contains(char::is_whitespace)
            || host == "localhost"
            || host.ends_with(".localhost")
        {
            return Reach::ThisMachine;
        }
        // `core::net`: the address types alone, no sockets (the domain does no I/O).
        match host.parse::<::core::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() || ip.is_unspecified() => Reach::ThisMachine,
            Ok(::core::net::IpAddr::V4(v4)) if v4.is_private() || v4.is_link_local() => {
                Reach::LocalNetwork
            }
            Ok(::core::net::IpAddr::V6(v6))
                if (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80 =>
            {
                Reach::LocalNetwork
            }
            Ok(_) => Reach::Network,
            Err(_) if host.ends_with(".local") || !host.contains('.') => Reach::LocalNetwork,
            Err(_) => Reach::Network,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_name_round_trips_and_is_unique() {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len());
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(*k));
            let j = serde_json::to_string(k).expect("invariant: a string serialises");
            assert_eq!(j, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&j).ok(), Some(*k));
        }
        for v in Via::ALL {
            assert_eq!(Via::parse(v.as_str()), Some(*v));
        }
        assert!(Via::parse("bogus").is_none());
    }

    #[test]
    fn reach_by_host() {
        for (url, want) in [
            ("ws://localhost:8765", Reach::ThisMachine),
            ("ws://127.0.0.1:1", Reach::ThisMachine),
            ("ws://[::1]:80/x", Reach::ThisMachine),
            ("ws://0.0.0.0:8765", Reach::ThisMachine),
            ("ws://192.168.1.20:8765", Reach::LocalNetwork),
            ("ws://10.1.2.3:1", Reach::LocalNetwork),
            ("ws://[fe80::1]:1", Reach::LocalNetwork),
            ("ws://pi.local:8765", Reach::LocalNetwork),
            ("ws://nas:8765", Reach::LocalNetwork),
            ("wss://chat.example.org", Reach::Network),
            ("ws://203.0.113.9:443", Reach::Network),
            ("not a url", Reach::ThisMachine),
        ] {
            assert_eq!(Reach::of_url(url), want, "{url}");
        }
    }
}
