//! Glob filters.

use authful_mcp_proxy::glob::Glob;
use proptest::prelude::*;

use super::cases;

proptest! {
    #![proptest_config(cases(1000))]

    /// 1000 cases: a pattern without wildcard characters is a valid glob that matches exactly
    /// itself; `*` matches everything.
    #[test]
    fn plain_patterns_match_exactly_themselves(
        pattern in "[^*?\\[\\]]{1,12}",
        other in prop_oneof![any::<String>(), "[^*?\\[\\]]{0,12}"],
    ) {
        let glob = Glob::new(&pattern).unwrap();
        prop_assert!(glob.matches(&pattern));
        prop_assert_eq!(glob.matches(&other), other == pattern);
        prop_assert!(Glob::new("*").unwrap().matches(&other));
    }

    /// 1000 cases: any pattern is a glob or an error, and matching any name never panics.
    #[test]
    fn globs_never_panic(
        pattern in prop_oneof![any::<String>(), "[a-z*?\\[\\]!-]{0,10}"],
        name in prop_oneof![any::<String>(), "[a-z\\]-]{0,10}"],
    ) {
        if let Ok(glob) = Glob::new(&pattern) {
            let _ = glob.matches(&name);
        }
    }
}
