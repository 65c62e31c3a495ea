//! The structural check: the YAML tree against the JSON Schema of
//! [`Config`](crate::config::Config).
//!
//! Keys, types and enums come from the schema, walked generically (`$ref`, `anyOf`/`oneOf`,
//! `type`, `enum`/`const`, `properties`, `additionalProperties`, `items`), so a field added to
//! the Rust types is checked without touching this file. The walk also expands `${VAR}` in
//! string values and returns the tree as the loader should see it, with every value it
//! reported left out: what reaches [`resolve`](crate::config::resolve) has the right types.
//! Whether a key is required, or a number in range, is a rule of `resolve`: another layer may
//! supply or set it.

use std::collections::HashSet;

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use super::kinds::{accepts, coerce, describe, kind_word, or_list, quote_json, schema_types};
use crate::config::{
    checks::suggest,
    finding::{Anchor, Finding},
    interpolate::{self, Expanded},
    locate::KeyPath,
};

/// State of one walk over the tree.
pub(super) struct Walker<'a> {
    /// The whole schema, for `$ref`s.
    root: &'a Json,
    env: &'a dyn Fn(&str) -> Option<String>,
    strict: bool,
    /// Problems found, in walk order.
    pub(super) findings: Vec<Finding>,
    /// Strings that still lack an unset variable's value: later checks of their content
    /// would only repeat the warning.
    pub(super) unresolved: HashSet<KeyPath>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(
        root: &'a Json,
        env: &'a dyn Fn(&str) -> Option<String>,
        strict: bool,
    ) -> Self {
        Self {
            root,
            env,
            strict,
            findings: Vec::new(),
            unresolved: HashSet::new(),
        }
    }

    /// A walker for trying one branch of an `anyOf` without committing its findings.
    fn fork(&self) -> Self {
        Self::new(self.root, self.env, self.strict)
    }

    fn absorb(&mut self, other: Walker<'_>) {
        self.findings.extend(other.findings);
        self.unresolved.extend(other.unresolved);
    }

    fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }

    fn error(&mut self, path: &KeyPath, anchor: Anchor, message: String) {
        self.findings
            .push(Finding::error(path.clone(), anchor, message));
    }

    /// Checks `value` at `path` against `schema` and returns it expanded and normalised, or
    /// `None` when it was reported.
    pub(super) fn walk(&mut self, value: &Yaml, schema: &Json, path: &KeyPath) -> Option<Yaml> {
        match value {
            // Expanded here, exactly once: `$$` must not turn into a reference on a second pass.
            Yaml::String(raw) => {
                let expanded = self.expand(raw, path)?;
                let text = Yaml::String(expanded.text);
                self.check(&text, schema, path, expanded.had_references)
            }
            _ => self.check(value, schema, path, false),
        }
    }

    fn expand(&mut self, raw: &str, path: &KeyPath) -> Option<Expanded> {
        match interpolate::expand(raw, self.env) {
            Ok(expanded) => {
                for name in &expanded.unset {
                    let message = format!(
                        "environment variable {name} is not set and has no default (write \
                         ${{{name}:-default}} to give one); it expands to an empty string"
                    );
                    let finding = if self.strict {
                        Finding::error(path.clone(), Anchor::Value(path.clone()), message)
                    } else {
                        Finding::warning(path.clone(), Anchor::Value(path.clone()), message)
                    };
                    self.findings.push(finding);
                }
                if !expanded.unset.is_empty() {
                    self.unresolved.insert(path.clone());
                }
                Some(expanded)
            }
            Err(reason) => {
                self.error(path, Anchor::Value(path.clone()), reason.to_string());
                self.unresolved.insert(path.clone());
                None
            }
        }
    }

    /// Follows `$ref`s into `$defs`; annotations beside a `$ref` carry no constraints here.
    fn resolve<'s>(&self, mut schema: &'s Json) -> &'s Json
    where
        'a: 's,
    {
        // Bounded: a reference cycle without a constraint in between cannot describe data.
        for _ in 0..32 {
            let Some(target) = schema
                .get("$ref")
                .and_then(Json::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|pointer| self.root.pointer(pointer))
            else {
                break;
            };
            schema = target;
        }
        schema
    }

    /// Checks an already expanded value; `from_env` tells that it came out of `${...}`.
    fn check(
        &mut self,
        value: &Yaml,
        schema: &Json,
        path: &KeyPath,
        from_env: bool,
    ) -> Option<Yaml> {
        let schema = self.resolve(schema);
        let branches = schema.get("anyOf").or_else(|| schema.get("oneOf"));
        if let Some(branches) = branches.and_then(Json::as_array) {
            return self.check_branches(value, branches, path, from_env);
        }
        if let Yaml::Tagged(tagged) = value {
            let message = format!("YAML tags ({}) are not supported here", tagged.tag);
            self.error(path, Anchor::Value(path.clone()), message);
            return None;
        }
        let value = self.check_type(value, schema, path, from_env)?;
        if !self.check_enum(&value, schema, path) || !self.check_range(&value, schema, path) {
            return None;
        }
        Some(match value {
            Yaml::Mapping(map) => Yaml::Mapping(self.check_mapping(&map, schema, path)),
            Yaml::Sequence(items) => Yaml::Sequence(self.check_items(&items, schema, path)),
            other => other,
        })
    }

    /// The first branch that takes the value wins. When none does, the findings of the one
    /// branch of the value's own kind are the useful ones (`scopes: [a, {}]` → `scopes[1]`);
    /// otherwise say which kinds would do.
    fn check_branches(
        &mut self,
        value: &Yaml,
        branches: &[Json],
        path: &KeyPath,
        from_env: bool,
    ) -> Option<Yaml> {
        let mut fitting = Vec::new();
        for branch in branches {
            let mut trial = self.fork();
            let checked = trial.check(value, branch, path, from_env);
            if !trial.has_errors() {
                self.absorb(trial);
                return checked;
            }
            if self.kind_fits(value, branch) {
                fitting.push((trial, checked));
            }
        }
        if fitting.len() == 1
            && let Some((trial, checked)) = fitting.pop()
        {
            self.absorb(trial);
            return checked;
        }
        let mut kinds = Vec::new();
        for branch in branches {
            self.expected_kinds(branch, &mut kinds);
        }
        let message = format!("expected {}, found {}", or_list(&kinds), describe(value));
        self.error(path, Anchor::Value(path.clone()), message);
        None
    }

    /// Whether a branch's declared type takes this kind of value at all.
    fn kind_fits(&self, value: &Yaml, branch: &Json) -> bool {
        let branch = self.resolve(branch);
        if let Some(subs) = branch
            .get("anyOf")
            .or_else(|| branch.get("oneOf"))
            .and_then(Json::as_array)
        {
            return subs.iter().any(|s| self.kind_fits(value, s));
        }
        schema_types(branch).is_none_or(|types| accepts(&types, value))
    }

    /// The kinds of value a schema takes, as words for a message ("a string", "a list").
    fn expected_kinds(&self, schema: &Json, out: &mut Vec<&'static str>) {
        let schema = self.resolve(schema);
        if let Some(subs) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Json::as_array)
        {
            for sub in subs {
                self.expected_kinds(sub, out);
            }
            return;
        }
        for kind in schema_types(schema).unwrap_or_default() {
            let word = kind_word(kind);
            if kind != "null" && !out.contains(&word) {
                out.push(word);
            }
        }
    }

    /// Returns the value to go on with, or `None` after reporting a mismatch.
    fn check_type(
        &mut self,
        value: &Yaml,
        schema: &Json,
        path: &KeyPath,
        from_env: bool,
    ) -> Option<Yaml> {
        let Some(types) = schema_types(schema) else {
            return Some(value.clone());
        };
        if accepts(&types, value) {
            return Some(value.clone());
        }
        if let Some(coerced) = coerce(&types, value, from_env) {
            return Some(coerced);
        }
        let expected: Vec<&str> = types
            .iter()
            .filter(|t| **t != "null")
            .map(|t| kind_word(t))
            .collect();
        let after = if from_env {
            " (after expanding variables)"
        } else {
            ""
        };
        let message = format!(
            "expected {}, found {}{after}",
            or_list(&expected),
            describe(value)
        );
        self.error(path, Anchor::Value(path.clone()), message);
        None
    }

    /// `minimum` and `maximum`, which the schema has for unsigned and bounded integers (a
    /// timeout of `-1`, a name budget of `300`); true when the value is within them. Worded as
    /// the resolve rules word the same bounds for env vars and flags.
    fn check_range(&mut self, value: &Yaml, schema: &Json, path: &KeyPath) -> bool {
        let Yaml::Number(number) = value else {
            return true;
        };
        let Some(x) = number.as_f64() else {
            return true;
        };
        let bound = |key| schema.get(key).filter(|b| b.is_number());
        let message = match (bound("minimum"), bound("maximum")) {
            (Some(min), _) if min.as_f64().is_some_and(|min| x < min) => {
                format!("{number} must be at least {min}")
            }
            (_, Some(max)) if max.as_f64().is_some_and(|max| x > max) => {
                format!("{number} must be at most {max}")
            }
            _ => return true,
        };
        self.error(path, Anchor::Value(path.clone()), message);
        false
    }

    /// `enum` and `const`; true when the value is allowed.
    fn check_enum(&mut self, value: &Yaml, schema: &Json, path: &KeyPath) -> bool {
        let allowed: Vec<&Json> = match (schema.get("enum"), schema.get("const")) {
            (Some(Json::Array(list)), _) => list.iter().collect(),
            (_, Some(constant)) => vec![constant],
            _ => return true,
        };
        let as_json = serde_json::to_value(value).unwrap_or(Json::Null);
        if allowed.contains(&&as_json) {
            return true;
        }
        let choices: Vec<String> = allowed.iter().map(|v| quote_json(v)).collect();
        let message = format!(
            "{} is not allowed; expected one of {}",
            quote_json(&as_json),
            choices.join(", ")
        );
        self.error(path, Anchor::Value(path.clone()), message);
        false
    }

    fn check_mapping(&mut self, map: &Mapping, schema: &Json, path: &KeyPath) -> Mapping {
        let properties = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        let mut out = Mapping::new();
        for (key, item) in map {
            let Some(name) = self.key_name(key, path) else {
                continue;
            };
            let child = path.key(&name);
            let item_schema = match properties.and_then(|p| p.get(&name)) {
                Some(s) => Some(s),
                None => match additional {
                    Some(Json::Bool(false)) => {
                        let known: Vec<&str> =
                            properties.map_or_else(Vec::new, |p| p.keys().map(|k| &**k).collect());
                        self.unknown_key(&child, &name, &known);
                        continue;
                    }
                    Some(s @ Json::Object(_)) => Some(s),
                    _ => None,
                },
            };
            let checked = match item_schema {
                Some(s) => self.walk(item, s, &child).or_else(|| self.placeholder(s)),
                None => Some(item.clone()),
            };
            if let Some(checked) = checked {
                out.insert(Yaml::String(name), checked);
            }
        }
        out
    }

    /// What stands in for a reported value: an empty mapping where a mapping is meant, so
    /// that a broken backend is still a backend (and not "no backends" on top of its error).
    fn placeholder(&self, schema: &Json) -> Option<Yaml> {
        self.takes_mapping(schema)
            .then(|| Yaml::Mapping(Mapping::new()))
    }

    fn takes_mapping(&self, schema: &Json) -> bool {
        let schema = self.resolve(schema);
        match schema.get("anyOf").or_else(|| schema.get("oneOf")) {
            Some(Json::Array(subs)) => subs.iter().any(|s| self.takes_mapping(s)),
            _ => schema_types(schema).is_some_and(|types| types.contains(&"object")),
        }
    }

    /// A mapping key as text; numbers and booleans are taken as their text (`1: x`).
    fn key_name(&mut self, key: &Yaml, path: &KeyPath) -> Option<String> {
        match key {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Number(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            _ => {
                let message = format!("keys must be text, found {}", describe(key));
                self.error(path, Anchor::Value(path.clone()), message);
                None
            }
        }
    }

    fn unknown_key(&mut self, path: &KeyPath, name: &str, known: &[&str]) {
        let message = match suggest(name, known.iter().copied()) {
            Some(close) => format!("unknown key; did you mean '{close}'?"),
            None if known.is_empty() => "unknown key".to_owned(),
            None => format!("unknown key; expected one of: {}", known.join(", ")),
        };
        self.error(path, Anchor::Key(path.clone()), message);
    }

    fn check_items(&mut self, items: &[Yaml], schema: &Json, path: &KeyPath) -> Vec<Yaml> {
        match schema.get("items").filter(|s| s.is_object()) {
            // A reported item becomes empty text, so that later items keep their index.
            Some(item_schema) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    self.walk(item, item_schema, &path.index(i))
                        .unwrap_or_else(|| Yaml::String(String::new()))
                })
                .collect(),
            None => items.to_vec(),
        }
    }
}
