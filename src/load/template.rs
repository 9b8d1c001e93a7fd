//! How a message frame wraps the envelope token for a server that expects its own format.
//!
//! A chat consumer typically reads `{"message": "..."}`; the scenario's `send_template` says so
//! with `{{envelope}}` where the token goes. The template is split once, so building a frame is
//! two copies and the token, into a reused buffer. The frame, template included, is padded to the
//! scenario's payload size. On receipt nothing needs the template: the token is found wherever
//! the server put it.

use crate::envelope::Envelope;
use crate::scenario::external::ENVELOPE_PLACEHOLDER;

/// The text around the envelope token in every frame sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameTemplate {
    before: String,
    after: String,
}

impl FrameTemplate {
    /// The bare token, nothing around it (the embedded server's frames).
    pub fn bare() -> Self {
        Self::default()
    }

    /// A template with one `{{envelope}}` (the scenario checked there is exactly one).
    pub fn new(text: &str) -> Self {
        let (before, after) = text.split_once(ENVELOPE_PLACEHOLDER).unwrap_or((text, ""));
        Self {
            before: before.to_string(),
            after: after.to_string(),
        }
    }

    /// Writes the frame for `envelope` into `out` (cleared first), `payload` bytes long when the
    /// template and the envelope fit in that.
    pub fn encode_into(&self, envelope: &Envelope<'_>, payload: usize, out: &mut String) {
        out.clear();
        out.push_str(&self.before);
        envelope.append_to(payload.saturating_sub(self.before.len() + self.after.len()), out);
        out.push_str(&self.after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_wrap_the_token_and_keep_the_payload_size() {
        let envelope = Envelope {
            nonce: 0x10,
            sender: 3,
            seq: 7,
            room: "lobby",
            intended_us: 11,
        };
        let template = FrameTemplate::new(r#"{"message": "{{envelope}}"}"#);
        let mut frame = String::new();
        template.encode_into(&envelope, 128, &mut frame);
        assert_eq!(frame.len(), 128);
        assert!(
            frame.starts_with(r#"{"message": "lr2|0000000000000010|3|7|lobby|11|xx"#),
            "{frame}"
        );
        assert!(frame.ends_with("xx\"}"), "{frame}");
        let json: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(Envelope::find(json["message"].as_str().unwrap()), Some(envelope));
        // Re-encoded by a server (escaped inside another JSON string), still found.
        let forwarded = serde_json::json!({ "text": frame }).to_string();
        assert_eq!(Envelope::find(&forwarded), Some(envelope));
        let mut bare = String::new();
        FrameTemplate::bare().encode_into(&envelope, 64, &mut bare);
        let mut plain = String::new();
        envelope.encode_into(64, &mut plain);
        assert_eq!(bare, plain);
    }
}
