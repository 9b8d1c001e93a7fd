//! The envelope every leakrun message carries: who sent it, its sequence number, the room it was
//! sent to and when it was meant to be sent, padded to the payload size.
//!
//! It is one printable token, `lr1|<sender>|<seq>|<room>|<intended µs>|` followed by padding, made
//! only of characters that survive JSON and HTML escaping untouched, so it can be found again inside
//! whatever a server wraps around it. Encoding reuses one buffer and decoding borrows: the
//! per-message path allocates nothing here.

use std::fmt::Write as _;

/// Marks the start of an envelope in a frame.
pub const MAGIC: &str = "lr1|";

/// A decoded envelope, borrowing the room name from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Sender id: unique per connection session within a run.
    pub sender: u64,
    /// Sequence number, from 0 per sender.
    pub seq: u64,
    /// Room the sender sent it to.
    pub room: &'a str,
    /// Intended send time in microseconds since the run's epoch.
    pub intended_us: u64,
}

impl Envelope<'_> {
    /// Writes the envelope into `out` (cleared first), padded with `x` up to `payload` bytes.
    pub fn encode_into(&self, payload: usize, out: &mut String) {
        out.clear();
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "{MAGIC}{}|{}|{}|{}|",
            self.sender, self.seq, self.room, self.intended_us
        );
        let pad = payload.saturating_sub(out.len());
        out.extend(std::iter::repeat_n('x', pad));
    }

    /// Finds and decodes the first envelope anywhere in `frame`.
    pub fn find(frame: &str) -> Option<Envelope<'_>> {
        let start = frame.find(MAGIC)? + MAGIC.len();
        let mut fields = frame[start..].splitn(5, '|');
        let sender = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let room = fields.next()?;
        let intended_us = fields.next()?.parse().ok()?;
        // The fifth piece is the padding (and whatever follows); its presence proves the
        // intended time was terminated and not cut short.
        fields.next()?;
        Some(Envelope {
            sender,
            seq,
            room,
            intended_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let env = Envelope {
            sender: 7,
            seq: 42,
            room: "room_a",
            intended_us: 123_456,
        };
        let mut buf = String::new();
        env.encode_into(64, &mut buf);
        assert_eq!(buf.len(), 64);
        assert_eq!(Envelope::find(&buf), Some(env));
        env.encode_into(0, &mut buf);
        assert_eq!(buf, "lr1|7|42|room_a|123456|");
    }

    #[test]
    fn is_found_inside_wrapping_and_rejects_garbage() {
        let framed = r#"{"message": "lr1|1|2|r|3|xxxx"}"#;
        assert_eq!(Envelope::find(framed).unwrap().seq, 2);
        assert_eq!(Envelope::find("hello"), None);
        assert_eq!(Envelope::find("lr1|1|2|r|3"), None);
        assert_eq!(Envelope::find("lr1|a|2|r|3|"), None);
    }
}
