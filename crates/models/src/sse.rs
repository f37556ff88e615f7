//! Server-sent events, decoded the same way for every streaming provider.
//!
//! Bytes are buffered until a full line is in, so chunk boundaries inside a line or inside a
//! multi-byte character are harmless. Lines end in `\n`, `\r\n` or `\r`.

use crate::{Error, Result};

/// A single SSE line this long is a broken or hostile upstream, not a model reply.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// What the stream carried.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// A complete event: its `event` name (empty when none) and its `data` lines joined.
    Event { event: String, data: String },
    /// llama.cpp's server reports a failure after the headers as `error: {json}`, a field
    /// standard SSE would drop; it is kept so the failure is not mistaken for a cut stream.
    ErrorField(String),
}

#[derive(Default)]
pub(crate) struct Decoder {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl Decoder {
    pub(crate) fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Frame>) -> Result<()> {
        while let Some(&first) = bytes.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.line.extend_from_slice(bytes);
                    if self.line.len() > MAX_LINE {
                        return Err(Error::Protocol("an SSE line exceeds 64 MiB".into()));
                    }
                    break;
                }
                Some(i) => {
                    self.line.extend_from_slice(&bytes[..i]);
                    self.after_cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, out)?;
                    // Reuse the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
            }
        }
        Ok(())
    }

    /// End of body: a final event without its blank line still counts.
    pub(crate) fn finish(&mut self, out: &mut Vec<Frame>) -> Result<()> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        self.process_line(b"", out)
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Frame>) -> Result<()> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                out.push(Frame::Event {
                    event,
                    data: std::mem::take(&mut self.data),
                });
            }
            return Ok(());
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| Error::Protocol("an SSE line is not valid UTF-8".into()))?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "error" => out.push(Frame::ErrorField(value.to_owned())),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(parts: &[&[u8]]) -> Vec<Frame> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for p in parts {
            d.feed(p, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    fn ev(event: &str, data: &str) -> Frame {
        Frame::Event {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn decoding_survives_any_chunking() {
        let stream = "event: a\r\ndata: {\"x\": \"é☃\"}\r\n\r\n: comment\n\nevent: b\ndata: 1\ndata:2\n\n\
                      error: {\"message\": \"bad\"}\n\nid: 7\nretry: 10\r\rdata: last";
        let whole = decode_all(&[stream.as_bytes()]);
        assert_eq!(
            whole,
            vec![
                ev("a", "{\"x\": \"é☃\"}"),
                ev("b", "1\n2"),
                Frame::ErrorField("{\"message\": \"bad\"}".into()),
                ev("", "last"),
            ]
        );
        let bytes = stream.as_bytes();
        for split in 0..bytes.len() {
            assert_eq!(
                decode_all(&[&bytes[..split], &bytes[split..]]),
                whole,
                "split at {split}"
            );
        }
        let mut d = Decoder::default();
        assert!(matches!(
            d.feed(b"data: \xff\n", &mut Vec::new()),
            Err(Error::Protocol(_))
        ));
    }
}
