//! Naming: prefixes, URIs, the 64-character rule.

use authful_mcp_proxy::{
    config::{self, Separator},
    naming::{MAX_TOOL_NAME, Naming},
};
use proptest::prelude::*;

use super::cases;

const SEPARATORS: [Separator; 3] = [
    Separator::Underscore,
    Separator::DoubleUnderscore,
    Separator::Dash,
];

/// A prefix `Config::resolve` accepts with `separator`.
fn valid_prefix(separator: Separator) -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}".prop_filter("a valid prefix", move |p| {
        config::prefix_problem(p, separator).is_none()
    })
}

pub(super) fn separator() -> impl Strategy<Value = Separator> {
    prop::sample::select(SEPARATORS.to_vec())
}

fn naming(prefix: Option<String>, separator: Separator) -> Naming {
    Naming::new("b", prefix.as_deref(), separator.as_str())
}

/// Item names of every kind: short and long valid tool names, names containing separators,
/// and names no tool may have (Unicode, dots, spaces).
pub(super) fn item_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,20}",
        "[a-z_-]{50,90}",
        "[a-z]{1,5}(_|__|-)[a-z_-]{0,8}",
        any::<String>(),
        "[a-zé. +/:]{1,12}",
    ]
}

fn is_tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `^[a-zA-Z0-9_-]{1,64}$`
pub(super) fn is_valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME).contains(&name.len()) && name.chars().all(is_tool_char)
}

/// A prefix and separator, or none.
fn prefixing() -> impl Strategy<Value = (Option<String>, Separator)> {
    separator().prop_flat_map(|s| (prop::option::weighted(0.8, valid_prefix(s)), Just(s)))
}

proptest! {
    #![proptest_config(cases(1000))]

    /// 1000 cases: a prefixed name (before the name budget) maps back to itself under its
    /// backend's naming, for any name: long, Unicode, with separators inside.
    #[test]
    fn names_round_trip((prefix, sep) in prefixing(), name in item_name()) {
        let n = naming(prefix, sep);
        let exposed = n.prefixed(&name);
        prop_assert_eq!(n.original_name(&exposed), Some(name.as_str()));
    }

    /// 1000 cases: a resource URI maps back to itself, for any URI (with `+`, `://`, Unicode).
    #[test]
    fn uris_round_trip(
        (prefix, sep) in prefixing(),
        uri in prop_oneof![any::<String>(), "[a-z+]{1,8}\\+?[a-z]{0,4}://[a-z+/]{0,10}"],
    ) {
        let n = naming(prefix, sep);
        let exposed = n.uri(&uri);
        prop_assert_eq!(n.original_uri(&exposed), Some(uri.as_str()));
    }

    /// 1000 cases: with two different valid prefixes, a name or URI one backend exposes never
    /// maps back under the other: prefixed backends cannot collide.
    #[test]
    fn different_prefixes_never_collide(
        (a, b, sep) in separator().prop_flat_map(|s| (valid_prefix(s), valid_prefix(s), Just(s))),
        name in item_name(),
        other in item_name(),
    ) {
        prop_assume!(a != b);
        let (na, nb) = (naming(Some(a), sep), naming(Some(b), sep));
        let (as_name, as_uri) = (na.prefixed(&name), na.uri(&name));
        prop_assert_eq!(nb.original_name(&as_name), None);
        prop_assert_eq!(nb.original_uri(&as_uri), None);
        prop_assert_ne!(na.prefixed(&name), nb.prefixed(&other));
        if let (Ok(x), Ok(y)) = (na.tool(&name), nb.tool(&other)) {
            // Shortened names keep the prefix: the first 55 characters are the full name's.
            prop_assert_ne!(x, y);
        }
    }

    /// 1000 cases: an exposed tool name matches `^[a-zA-Z0-9_-]{1,64}$`; it is the full name
    /// (which maps back) when that fits, otherwise 64 characters: the full name's first 55,
    /// `_` and 8 hex digits, the same every time. A name that cannot be valid is refused.
    #[test]
    fn tool_names_are_valid_and_stable((prefix, sep) in prefixing(), name in item_name()) {
        let n = naming(prefix, sep);
        let full = n.prefixed(&name);
        match n.tool(&name) {
            Ok(exposed) => {
                prop_assert!(is_valid_tool_name(&exposed), "{exposed:?}");
                prop_assert_eq!(n.tool(&name).unwrap(), exposed.clone());
                if full.len() <= MAX_TOOL_NAME {
                    prop_assert_eq!(&exposed, &full);
                    prop_assert_eq!(n.original_name(&exposed), Some(name.as_str()));
                } else {
                    prop_assert_eq!(exposed.len(), MAX_TOOL_NAME);
                    prop_assert_eq!(&exposed[..55], &full[..55]);
                    let (_, hash) = exposed.split_at(55);
                    prop_assert!(hash.starts_with('_'));
                    prop_assert!(hash[1..].chars().all(|c| c.is_ascii_hexdigit()));
                }
            }
            Err(_) => prop_assert!(name.is_empty() || !full.chars().all(is_tool_char)),
        }
    }

    /// 1000 cases: distinct tool names of one backend get distinct exposed names when both fit
    /// or both are shortened (a shortened name against a 64-character one is the catalog's
    /// business: see `catalog_exposes_each_name_once_and_routes_it_home`).
    #[test]
    fn tool_naming_is_injective_among_full_or_among_shortened_names(
        (prefix, sep) in prefixing(),
        a in item_name(),
        b in item_name(),
    ) {
        prop_assume!(a != b);
        let n = naming(prefix, sep);
        if let (Ok(x), Ok(y)) = (n.tool(&a), n.tool(&b)) {
            let shortened = |s: &str| n.prefixed(s).len() > MAX_TOOL_NAME;
            if shortened(&a) == shortened(&b) {
                prop_assert_ne!(x, y);
            }
        }
    }
}
