//! Maps a key path (`probes.process.ring_buffer_size`, `a.b[2].c`) to the
//! line it stands on in the YAML text, so errors can name the line.
//!
//! serde gives paths but no positions, and serde_yaml_ng gives a position
//! only for the first syntax/type error; a marked event stream from
//! yaml-rust2 gives both for every key.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Collector {
    stack: Vec<(String, Frame)>,
    lines: HashMap<String, usize>,
}

impl Collector {
    fn child_path(&self) -> Option<String> {
        let (base, frame) = self.stack.last()?;
        Some(match frame {
            Frame::Map { key: Some(k) } if base.is_empty() => k.clone(),
            Frame::Map { key: Some(k) } => format!("{base}.{k}"),
            Frame::Map { key: None } => return None,
            Frame::Seq { index } => format!("{base}[{index}]"),
        })
    }

    /// A value (scalar, map or seq) finished in the current frame.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some((_, Frame::Map { key })) => *key = None,
            Some((_, Frame::Seq { index })) => *index += 1,
            None => {}
        }
    }

    fn start_node(&mut self, mark: Marker) -> String {
        let path = self.child_path().unwrap_or_default();
        if let Some((_, Frame::Seq { .. })) = self.stack.last() {
            self.lines.entry(path.clone()).or_insert(mark.line());
        }
        path
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some((_, Frame::Map { key })) = self.stack.last_mut() {
                    if key.is_none() {
                        *key = Some(value);
                        if let Some(p) = self.child_path() {
                            self.lines.entry(p).or_insert(mark.line());
                        }
                        return;
                    }
                }
                self.start_node(mark);
                self.value_done();
            }
            Event::Alias(_) => {
                self.value_done();
            }
            Event::MappingStart(..) => {
                let path = self.start_node(mark);
                self.stack.push((path, Frame::Map { key: None }));
            }
            Event::SequenceStart(..) => {
                let path = self.start_node(mark);
                self.stack.push((path, Frame::Seq { index: 0 }));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

/// Line numbers (1-based) of every key and sequence item in `text`, by path.
/// Unparseable text gives an empty map: the syntax error itself carries the
/// position in that case.
pub fn key_lines(text: &str) -> HashMap<String, usize> {
    let mut c = Collector::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut c, false).is_err() {
        return HashMap::new();
    }
    c.lines
}

/// The line of `path`, or of its nearest ancestor that is in the text.
pub fn line_of(lines: &HashMap<String, usize>, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = lines.get(p) {
            return Some(*l);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "probes:\n  process:\n    ring_buffer_size: 3\nresource:\n  attributes:\n    a: 1\nlist:\n  - x: 1\n  - y: 2\n";
        let lines = key_lines(text);
        assert_eq!(lines.get("probes.process.ring_buffer_size"), Some(&3));
        assert_eq!(lines.get("resource.attributes.a"), Some(&6));
        assert_eq!(lines.get("list[1].y"), Some(&9));
        assert_eq!(line_of(&lines, "resource.attributes.b"), Some(5));
        assert_eq!(line_of(&lines, "nothing.here"), None);
    }
}
