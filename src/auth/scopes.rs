//! Scope lists as the token lifecycle combines them: the scopes a token asks for (the
//! configured ones and those a backend stepped up to), and the narrower `scope` a refresh may
//! ask for within its grant (RFC 6749 §6).
//!
//! Plain arithmetic on lists, in order and without repeats, so that what is sent to the
//! provider is predictable: the renewal path and [`step_up`](super::step_up) both use it, and
//! neither needs the other for it.

/// `scopes` with `more` added, each once, in order.
pub fn union(scopes: &[String], more: &[String]) -> Vec<String> {
    let mut all = scopes.to_vec();
    for scope in more {
        if !all.contains(scope) {
            all.push(scope.clone());
        }
    }
    all
}

/// The `scope` a refresh asks for, when the grant holds more than a backend needs: `needed`,
/// within the grant. `None` asks for the grant's own scopes, which is what it needs then.
pub fn narrowed(grant: &[String], needed: &[String]) -> Option<Vec<String>> {
    if needed.is_empty() {
        // Nothing in particular: the grant's own.
        return None;
    }
    let wider = grant.iter().any(|s| !needed.contains(s));
    wider.then(|| {
        needed
            .iter()
            .filter(|s| grant.contains(s))
            .cloned()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_union_adds_each_scope_once_in_order() {
        assert_eq!(
            union(&words("openid profile"), &words("mcp:admin openid")),
            words("openid profile mcp:admin")
        );
    }

    #[test]
    fn a_refresh_narrows_a_wider_grant_to_what_the_backend_needs() {
        let grant = words("openid profile mcp:admin");
        assert_eq!(
            narrowed(&grant, &words("openid profile")),
            Some(words("openid profile"))
        );
        assert_eq!(narrowed(&grant, &grant), None);
        assert_eq!(
            narrowed(&words("openid"), &words("openid mcp:admin")),
            None,
            "never more than the grant"
        );
    }
}
