//! The envelope every leakrun message carries: the run it belongs to, who sent it, its sequence
//! number, the room it was sent to and when it was meant to be sent, padded to the payload size.
//!
//! It is one printable token, `lr2|<nonce>|<sender>|<seq>|<room>|<intended µs>|` followed by
//! padding (the nonce in 16 hex digits), made
//! only of characters that survive JSON and HTML escaping untouched, so it can be found again inside
//! whatever a server wraps around it. Encoding reuses one buffer and decoding borrows: the
//! per-message path allocates nothing here. A token comes back from the network, so nothing in it
//! is trusted: any number that parses is accepted here and judged by the tracker and the analysis.

use std::fmt::Write as _;

/// Marks the start of an envelope in a frame.
pub const MAGIC: &str = "lr2|";

/// A decoded envelope, borrowing the room name from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The run's nonce ([`crate::observe::clock::RunClock::nonce`]).
    pub nonce: u64,
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
        self.append_to(payload, out);
    }

    /// Appends the envelope to `out`, padded with `x` so that it takes `len` bytes (more when
    /// the envelope itself is longer).
    pub fn append_to(&self, len: usize, out: &mut String) {
        let start = out.len();
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "{MAGIC}{:016x}|{}|{}|{}|{}|",
            self.nonce, self.sender, self.seq, self.room, self.intended_us
        );
        let pad = len.saturating_sub(out.len() - start);
        out.extend(std::iter::repeat_n('x', pad));
    }

    /// Finds and decodes the first envelope anywhere in `frame`.
    pub fn find(frame: &str) -> Option<Envelope<'_>> {
        Self::find_all(frame).next()
    }

    /// Every envelope in `frame`, in order: a server may forward several messages in one frame.
    pub fn find_all(frame: &str) -> impl Iterator<Item = Envelope<'_>> {
        let mut from = 0;
        std::iter::from_fn(move || {
            while let Some(at) = frame.get(from..)?.find(MAGIC) {
                let start = from + at + MAGIC.len();
                match decode(&frame[start..]) {
                    Some((envelope, used)) => {
                        from = start + used;
                        return Some(envelope);
                    }
                    None => from = start,
                }
            }
            from = frame.len();
            None
        })
    }
}

/// Decodes the fields after [`MAGIC`]: the envelope and the bytes its five fields took, with
/// their terminators. The fifth `|` proves the intended time was not cut short.
fn decode(text: &str) -> Option<(Envelope<'_>, usize)> {
    let mut fields = text.splitn(6, '|');
    let nonce_text = fields.next()?;
    if nonce_text.len() != 16 {
        return None;
    }
    let sender_text = fields.next()?;
    let seq_text = fields.next()?;
    let room = fields.next()?;
    let intended_text = fields.next()?;
    fields.next()?;
    let used = 16 + sender_text.len() + seq_text.len() + room.len() + intended_text.len() + 5;
    Some((
        Envelope {
            nonce: u64::from_str_radix(nonce_text, 16).ok()?,
            sender: sender_text.parse().ok()?,
            seq: seq_text.parse().ok()?,
            room,
            intended_us: intended_text.parse().ok()?,
        },
        used,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let env = Envelope {
            nonce: 0xabc,
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
        assert_eq!(buf, "lr2|0000000000000abc|7|42|room_a|123456|");
    }

    #[test]
    fn is_found_inside_wrapping_and_rejects_garbage() {
        let framed = r#"{"message": "lr2|00000000000000ff|1|2|r|3|xxxx"}"#;
        assert_eq!(Envelope::find(framed).unwrap().seq, 2);
        assert_eq!(Envelope::find(framed).unwrap().nonce, 255);
        assert_eq!(Envelope::find("hello"), None);
        assert_eq!(Envelope::find("lr2|00000000000000ff|1|2|r|3"), None);
        assert_eq!(Envelope::find("lr2|00000000000000ff|a|2|r|3|"), None);
        assert_eq!(Envelope::find("lr2|ff|1|2|r|3|"), None, "a short nonce");
        assert_eq!(Envelope::find("lr1|1|2|r|3|"), None, "the old token");
    }

    #[test]
    fn every_envelope_in_a_frame_is_found() {
        let mut frame = String::from("[");
        for seq in 0..3 {
            frame.push_str(r#"{"message": ""#);
            Envelope {
                nonce: 1,
                sender: 4,
                seq,
                room: "lobby",
                intended_us: 9,
            }
            .append_to(30, &mut frame);
            frame.push_str(r#""},"#);
        }
        frame.push_str(r#""lr2|broken", "lr2|0000000000000001|5|0|lobby|1|"]"#);
        let seqs: Vec<(u64, u64)> = Envelope::find_all(&frame).map(|e| (e.sender, e.seq)).collect();
        assert_eq!(seqs, [(4, 0), (4, 1), (4, 2), (5, 0)]);
        assert_eq!(Envelope::find_all("no token here").count(), 0);
    }

    #[test]
    fn extreme_numbers_decode_without_overflow() {
        let max = "lr2|ffffffffffffffff|18446744073709551615|18446744073709551615|r|18446744073709551615|";
        let env = Envelope::find(max).unwrap();
        assert_eq!(
            (env.nonce, env.sender, env.seq, env.intended_us),
            (u64::MAX, u64::MAX, u64::MAX, u64::MAX)
        );
        assert_eq!(Envelope::find("lr2|0000000000000001|18446744073709551616|0|r|0|"), None);
        assert_eq!(Envelope::find("lr2|000000000000000g|1|0|r|0|"), None);
    }
}
