//! Shell-style globs for tool filters: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.

/// A checked glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

/// Why a pattern is not a glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob '{pattern}': {reason}")]
pub struct GlobError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Glob {
    /// Checks `pattern`: every `[` needs its `]`, and a class may not be empty.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let chars: Vec<char> = pattern.chars().collect();
        let fail = |reason: &str| GlobError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        if chars.is_empty() {
            return Err(fail("empty pattern"));
        }
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '[' {
                let end = class_end(&chars, i).ok_or_else(|| fail("'[' without a closing ']'"))?;
                i = end;
            } else if chars[i] == ']' {
                return Err(fail("']' without an opening '['"));
            }
            i += 1;
        }
        Ok(Self { pattern: chars })
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        matches_at(&self.pattern, &name)
    }
}

/// Index of the `]` closing the class opened at `start`; a `]` right after `[` or `[!` is a
/// member, not the end.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&'!') {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while i < p.len() {
        if p[i] == ']' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn class_matches(class: &[char], c: char) -> bool {
    let (negated, members) = match class.first() {
        Some('!') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < members.len() {
        if i + 2 < members.len() && members[i + 1] == '-' {
            found |= members[i] <= c && c <= members[i + 2];
            i += 3;
        } else {
            found |= members[i] == c;
            i += 1;
        }
    }
    found != negated
}

fn matches_at(p: &[char], s: &[char]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear in practice.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                si += 1;
                continue;
            }
            Some('[') => {
                if let Some(end) = class_end(p, pi)
                    && class_matches(&p[pi + 1..end], s[si])
                {
                    pi = end + 1;
                    si += 1;
                    continue;
                }
            }
            Some(&c) if c == s[si] => {
                pi += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A backend's tool filter: allowed when no `allow` glob is given or one matches, and no `deny`
/// glob matches (deny wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    /// Allow-list; empty allows everything.
    pub allow: Vec<Glob>,
    /// Deny-list.
    pub deny: Vec<Glob>,
}

impl ToolFilter {
    /// Whether the backend's tool `name` is exposed.
    pub fn allows(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(name)))
            && !self.deny.iter().any(|g| g.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().matches(s)
    }

    #[test]
    fn wildcards_and_classes() {
        assert!(m("search_*", "search_docs"));
        assert!(m("search_*", "search_"));
        assert!(!m("search_*", "research_docs"));
        assert!(m("*_delete", "user_delete"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("v[0-9]", "v7"));
        assert!(!m("v[!0-9]", "v7"));
        assert!(m("[]]x", "]x"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b", "xxaxxbxx"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert!(Glob::new("search_[").is_err());
        assert!(Glob::new("a]").is_err());
        assert!(Glob::new("").is_err());
    }

    #[test]
    fn deny_wins_over_allow() {
        let filter = ToolFilter {
            allow: vec![Glob::new("search_*").unwrap()],
            deny: vec![Glob::new("*_delete").unwrap()],
        };
        assert!(filter.allows("search_docs"));
        assert!(!filter.allows("search_delete"));
        assert!(!filter.allows("create_doc"));
        assert!(ToolFilter::default().allows("anything"));
    }
}
