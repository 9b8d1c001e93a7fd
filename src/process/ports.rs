//! Free loopback ports for the servers leakrun starts.
//!
//! The OS picks each port (bind to port 0), leakrun releases it for the server; the ports the
//! machine's own Redis, RabbitMQ and epmd use are never handed out, so a private server can never
//! be confused with a shared one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Ports of services a machine commonly runs for itself (Redis, AMQP, Erlang distribution, epmd):
/// never given to a private server.
pub const RESERVED: [u16; 4] = [6379, 5672, 25672, 4369];

/// `count` distinct loopback ports that were free a moment ago, none of them [`RESERVED`].
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    // Holding every listener until all are picked keeps the ports distinct.
    let mut held = Vec::with_capacity(count);
    let mut attempts = 0;
    while held.len() < count {
        attempts += 1;
        if attempts > count + 16 {
            return Err(std::io::Error::other("the OS kept offering reserved ports"));
        }
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = listener.local_addr()?.port();
        if !RESERVED.contains(&port) {
            held.push((port, listener));
        }
    }
    Ok(held.into_iter().map(|(port, _)| port).collect())
}

/// One free loopback port (see [`free_ports`]).
pub fn free_port() -> std::io::Result<u16> {
    Ok(free_ports(1)?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_never_reserved() {
        let ports = free_ports(6).expect("ports");
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 6, "{ports:?}");
        assert!(ports.iter().all(|p| !RESERVED.contains(p) && *p != 0), "{ports:?}");
    }
}
