//! The loopback guard: every address leakrun connects to is checked here, as the client that
//! connects will read it.
//!
//! The Redis and AMQP clients, tungstenite and the HTTP probes all parse their URLs with the
//! `url` crate, so the check does too, and judges the host that parser found — never a host cut
//! out of the text by hand (`redis://evil.example#@127.0.0.1/` is a URL of `evil.example` with a
//! fragment, whatever the last `@` suggests). A name is resolved and every address it gives must
//! be loopback: `localhost` is trusted only as far as the resolver makes it loopback, and a name
//! such as `127.0.0.1.nip.io` is not loopback whatever it resolves to.

use std::net::{IpAddr, ToSocketAddrs};

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a URL at all.
    #[error("`{text}` is not a URL ({reason}); write e.g. \"{example}\"")]
    NotUrl {
        /// The text as given, credentials removed.
        text: String,
        /// What the parser said.
        reason: String,
        /// A URL that would do.
        example: String,
    },
    /// A scheme this place does not take.
    #[error("scheme `{scheme}` is not supported here; valid: {valid}")]
    Scheme {
        /// The scheme found.
        scheme: String,
        /// The schemes allowed, e.g. `redis://`.
        valid: String,
    },
    /// No host in the URL.
    #[error("`{text}` names no host; write e.g. \"{example}\"")]
    NoHost {
        /// The text as given, credentials removed.
        text: String,
        /// A URL that would do.
        example: String,
    },
    /// A host that is not loopback (or a name that resolves to an address that is not).
    #[error(
        "host `{host}` is not a loopback address{detail}; leakrun only loads 127.0.0.0/8, ::1 or localhost unless the scenario sets `{allow_key} = true`"
    )]
    NotLoopback {
        /// The host as the client's parser reads it.
        host: String,
        /// What resolving it gave, when it was a name.
        detail: String,
        /// The key that lifts the guard, e.g. `backend.allow_remote`.
        allow_key: String,
    },
}

/// Parses `text` as the clients do and checks it: its scheme is one of `schemes`, its host is
/// loopback (a name: every address it resolves to) unless `allow_remote`. `allow_key` names the
/// key that would lift the guard, for the message.
pub fn check(text: &str, schemes: &[&str], allow_remote: bool, allow_key: &str) -> Result<url::Url, AddressError> {
    let example = format!("{}://127.0.0.1:8000/", schemes.first().copied().unwrap_or("http"));
    let url = url::Url::parse(text).map_err(|e| AddressError::NotUrl {
        text: crate::naming::redact(text),
        reason: e.to_string(),
        example: example.clone(),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(AddressError::Scheme {
            scheme: url.scheme().to_string(),
            valid: schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", "),
        });
    }
    let Some(host) = url.host() else {
        return Err(AddressError::NoHost {
            text: crate::naming::redact(text),
            example,
        });
    };
    if allow_remote {
        return Ok(url);
    }
    let refuse = |detail: String| AddressError::NotLoopback {
        host: url.host_str().unwrap_or_default().to_string(),
        detail,
        allow_key: allow_key.to_string(),
    };
    match host {
        url::Host::Ipv4(ip) => loopback_ip(IpAddr::V4(ip))
            .then_some(())
            .ok_or_else(|| refuse(String::new()))?,
        url::Host::Ipv6(ip) => loopback_ip(IpAddr::V6(ip))
            .then_some(())
            .ok_or_else(|| refuse(String::new()))?,
        // A scheme the `url` crate does not know (redis, amqp) keeps its host opaque: an IP
        // address arrives here as text, and the client connects to it as an address.
        url::Host::Domain(name) => match name.parse::<IpAddr>() {
            Ok(ip) => loopback_ip(ip).then_some(()).ok_or_else(|| refuse(String::new()))?,
            Err(_) if name.eq_ignore_ascii_case("localhost") => {
                let port = url.port_or_known_default().unwrap_or(0);
                let addresses: Vec<IpAddr> = match (name, port).to_socket_addrs() {
                    Ok(found) => found.map(|a| a.ip()).collect(),
                    Err(error) => return Err(refuse(format!(" (it does not resolve: {error})"))),
                };
                if addresses.is_empty() || !addresses.iter().all(|ip| loopback_ip(*ip)) {
                    let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
                    return Err(refuse(format!(" (it resolves to {})", list.join(", "))));
                }
            }
            Err(_) => return Err(refuse(String::new())),
        },
    }
    Ok(url)
}

/// True for 127.0.0.0/8, `::1` and `::ffff:127.x.y.z` (the IPv4 loopback, mapped); never for the
/// unspecified `0.0.0.0` or `::`.
pub fn loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        matches!(
            check(text, &["redis"], false, "backend.allow_remote"),
            Err(AddressError::NotLoopback { .. })
        )
    }

    #[test]
    fn the_host_is_the_one_the_client_parses() {
        // The fragment or query begins before the `@`: the host is evil.example.
        for text in [
            "redis://evil.example#@127.0.0.1/",
            "redis://evil.example?@127.0.0.1/",
            "redis://evil.example/#@127.0.0.1:6379/",
            "redis://evil.example:6379?x=@127.0.0.1/",
        ] {
            assert!(refused(text), "{text}");
            assert_eq!(url::Url::parse(text).unwrap().host_str(), Some("evil.example"));
        }
    }

    #[test]
    fn userinfo_tricks_do_not_hide_the_host() {
        assert!(refused("redis://127.0.0.1@evil.example/"));
        assert!(refused("redis://127.0.0.1:6379@evil.example:6379/"));
        assert!(refused("redis://u:p%40127.0.0.1@evil.example/"));
        assert!(!refused("redis://u:p@127.0.0.1:6379/"));
        assert!(!refused("redis://evil.example@127.0.0.1:6379/"));
    }

    #[test]
    fn addresses_are_judged_as_addresses() {
        assert!(!refused("redis://127.0.0.1:6379/"));
        assert!(!refused("redis://127.5.6.7:6379/"));
        assert!(!refused("redis://[::1]:6379/"));
        assert!(!refused("redis://[::ffff:127.0.0.1]:6379/"));
        assert!(refused("redis://[::ffff:10.0.0.1]:6379/"));
        assert!(refused("redis://0.0.0.0:6379/"));
        assert!(refused("redis://[::]:6379/"));
        assert!(refused("redis://10.0.0.1:6379/"));
        // Not an address the client would read as loopback: a name, refused.
        assert!(refused("redis://127.1:6379/"));
        assert!(refused("redis://0x7f.0.0.1:6379/"));
        assert!(refused("redis://2130706433:6379/"));
    }

    #[test]
    fn names_other_than_localhost_are_refused_unresolved() {
        assert!(refused("redis://127.0.0.1.nip.io:6379/"));
        assert!(refused("redis://localhost.evil.example:6379/"));
        assert!(refused("redis://localtest.me:6379/"));
    }

    #[test]
    fn localhost_is_resolved_and_every_address_checked() {
        match check("redis://localhost:6379/", &["redis"], false, "backend.allow_remote") {
            Ok(url) => assert_eq!(url.host_str(), Some("localhost")),
            // A machine whose resolver gives localhost an address that is not loopback.
            Err(AddressError::NotLoopback { detail, .. }) => assert!(detail.contains("resolve"), "{detail}"),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn special_schemes_normalise_before_the_check() {
        // ws and http hosts are parsed as IPv4 by the same rules the client uses.
        let url = check("ws://127.1:8000/x", &["ws"], false, "server.allow_remote").unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert!(
            check(
                "http://evil.example#@127.0.0.1/",
                &["http"],
                false,
                "server.allow_remote"
            )
            .is_err()
        );
    }

    #[test]
    fn remote_hosts_pass_only_when_allowed_and_messages_name_the_key() {
        let error = check(
            "amqp://guest:guest@evil.example/",
            &["amqp"],
            false,
            "backend.allow_remote",
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("evil.example") && message.contains("backend.allow_remote"),
            "{message}"
        );
        assert!(!message.contains("guest"), "{message}");
        assert!(check("amqp://evil.example/", &["amqp"], true, "backend.allow_remote").is_ok());
        assert!(matches!(
            check("rediss://127.0.0.1/", &["redis"], false, "backend.allow_remote"),
            Err(AddressError::Scheme { .. })
        ));
    }
}
