//! Key paths into the configuration and where each one sits in the YAML text.
//!
//! serde_yaml's `Value` forgets positions, so diagnostics look them up in an index built from
//! yaml-rust2's marked parser events: for every path, where its key and its value start.

use std::{collections::HashMap, fmt};

use yaml_rust2::{
    Event,
    parser::{MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// One step of a [`KeyPath`]: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A key of a mapping.
    Key(String),
    /// A position in a list, from 0.
    Index(usize),
}

/// Where a value sits in the configuration tree, e.g. `backends.tools.tools.allow[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The path of the document's top-level value.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The enclosing path, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    /// The steps from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ancestor` is this path or one of its ancestors.
    pub fn starts_with(&self, ancestor: &KeyPath) -> bool {
        self.0.starts_with(&ancestor.0)
    }

    /// The last step, when it is a mapping key.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last()? {
            Segment::Key(key) => Some(key),
            Segment::Index(_) => None,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column in the YAML text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Position {
    fn from_marker(mark: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Self {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// Where one path's key and value start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spot {
    key: Option<Position>,
    value: Position,
}

/// Path → position of the key and of the value, for the first document of a YAML text.
#[derive(Debug, Clone, Default)]
pub struct PositionIndex {
    spots: HashMap<KeyPath, Spot>,
}

impl PositionIndex {
    /// Indexes `text`. A text yaml-rust2 cannot parse yields what was indexed before the error
    /// (serde_yaml reports the syntax error itself).
    pub fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        // Errors are ignored on purpose: positions are a best effort for messages.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        Self {
            spots: builder.spots,
        }
    }

    /// Where the key of `path` starts; the value's start for list items and the root.
    pub fn key(&self, path: &KeyPath) -> Option<Position> {
        self.spots.get(path).map(|s| s.key.unwrap_or(s.value))
    }

    /// Where the value of `path` starts.
    pub fn value(&self, path: &KeyPath) -> Option<Position> {
        self.spots.get(path).map(|s| s.value)
    }

    /// The position of `path`'s key (or value), else of its nearest indexed ancestor below
    /// the root: values reached through an alias or a merge key have no text of their own,
    /// and the document's start says nothing about a key it lacks.
    pub fn nearest(&self, path: &KeyPath, want_key: bool) -> Option<Position> {
        let find = |p: &KeyPath| {
            if want_key { self.key(p) } else { self.value(p) }
        };
        if let Some(found) = find(path) {
            return Some(found);
        }
        let mut current = path.parent();
        while let Some(p) = current.filter(|p| !p.is_root()) {
            if let Some(found) = find(&p) {
                return Some(found);
            }
            current = p.parent();
        }
        None
    }
}

/// One open mapping or list while events stream in.
#[derive(Debug)]
enum Frame {
    Mapping {
        path: KeyPath,
        /// The key just read, waiting for its value.
        key: Option<(String, Position)>,
        /// No key read yet.
        first: bool,
    },
    List {
        path: KeyPath,
        next: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    spots: HashMap<KeyPath, Spot>,
    /// Depth inside a complex (non-scalar) mapping key, whose contents are not indexed.
    in_complex_key: usize,
    done: bool,
}

impl Builder {
    /// Whether the next node is a mapping key (rather than a value).
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }

    /// Records a value node starting at `at` and returns its path.
    fn value_at(&mut self, at: Position) -> KeyPath {
        let (path, key) = match self.stack.last_mut() {
            None => (KeyPath::root(), None),
            Some(Frame::Mapping { path, key, .. }) => match key.take() {
                Some((name, key_at)) => (path.key(&name), Some(key_at)),
                None => (path.clone(), None),
            },
            Some(Frame::List { path, next }) => {
                *next += 1;
                (path.index(*next - 1), None)
            }
        };
        // The first occurrence wins, like the first document.
        self.spots
            .entry(path.clone())
            .or_insert(Spot { key, value: at });
        path
    }

    fn start_key(&mut self, name: String, at: Position) {
        let Some(Frame::Mapping { path, key, first }) = self.stack.last_mut() else {
            return;
        };
        // yaml-rust2 marks a block mapping one column past its first key; a flow mapping's
        // `{` comes before its first key and stays.
        if std::mem::take(first)
            && let Some(spot) = self.spots.get_mut(path)
            && at < spot.value
        {
            spot.value = at;
        }
        *key = Some((name, at));
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        let at = Position::from_marker(mark);
        if self.in_complex_key > 0 {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.in_complex_key += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.in_complex_key -= 1;
                    if self.in_complex_key == 0 {
                        self.start_key("?".to_owned(), at);
                    }
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Scalar(text, ..) if self.expects_key() => self.start_key(text, at),
            Event::Scalar(..) | Event::Alias(_) => {
                self.value_at(at);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if self.expects_key() => {
                self.in_complex_key = 1;
            }
            Event::MappingStart(..) => {
                let path = self.value_at(at);
                self.stack.push(Frame::Mapping {
                    path,
                    key: None,
                    first: true,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.value_at(at);
                self.stack.push(Frame::List { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> KeyPath {
        let mut p = KeyPath::root();
        for part in text.split('.') {
            p = match part.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(part),
            };
        }
        p
    }

    fn pos(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn keys_and_values_of_block_and_flow_nodes() {
        let text = "backends:\n  tools:\n    url: https://x/mcp\n    tools: { allow: [\"a\", b] }\n  \
                    other:\n    headers:\n      X-Team: core\n";
        let index = PositionIndex::build(text);
        assert_eq!(index.key(&path("backends")), pos(1, 1));
        assert_eq!(index.key(&path("backends.tools")), pos(2, 3));
        assert_eq!(index.key(&path("backends.tools.url")), pos(3, 5));
        assert_eq!(index.value(&path("backends.tools.url")), pos(3, 10));
        assert_eq!(
            index.value(&path("backends.tools.tools.allow.0")),
            pos(4, 22)
        );
        assert_eq!(
            index.value(&path("backends.tools.tools.allow.1")),
            pos(4, 27)
        );
        assert_eq!(index.key(&path("backends.other.headers.X-Team")), pos(7, 7));
        assert_eq!(index.value(&path("backends.tools.tools")), pos(4, 12));
    }

    #[test]
    fn unindexed_paths_fall_back_to_their_nearest_ancestor() {
        let index = PositionIndex::build("a:\n  b: 1\n");
        assert_eq!(index.nearest(&path("a.b.c.d"), true), pos(2, 3));
        assert_eq!(index.nearest(&path("x"), true), None);
        assert_eq!(index.value(&KeyPath::root()), pos(1, 1));
        assert_eq!(index.value(&path("a")), pos(2, 3));
    }

    #[test]
    fn block_lists_and_complex_keys() {
        let text = "? [a, b]\n: 1\nlist:\n  - one\n  - two\n";
        let index = PositionIndex::build(text);
        assert_eq!(index.value(&path("list.0")), pos(4, 5));
        assert_eq!(index.value(&path("list.1")), pos(5, 5));
    }

    #[test]
    fn paths_print_dotted_with_indices() {
        assert_eq!(
            path("backends.tools.tools.allow.0").to_string(),
            "backends.tools.tools.allow[0]"
        );
        assert_eq!(KeyPath::root().to_string(), "");
    }
}
