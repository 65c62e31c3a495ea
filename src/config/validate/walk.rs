//! The structural check: the YAML tree against the JSON Schema of [`Config`](super::Config).
//!
//! Keys, types, enums and required keys all come from the schema, walked generically
//! (`$ref`, `anyOf`/`oneOf`, `type`, `enum`/`const`, `properties`, `additionalProperties`,
//! `required`, `items`, `minimum`/`maximum`), so a field added to the Rust types is checked
//! without touching this file. The walk also expands `${VAR}` in string values and returns the
//! tree as the loader should see it.

use std::collections::HashSet;

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use super::{Anchor, Finding, suggest};
use crate::config::{
    interpolate::{self, Expanded},
    locate::{KeyPath, Segment},
};

/// State of one walk over the tree.
pub(super) struct Walker<'a> {
    /// The whole schema, for `$ref`s.
    root: &'a Json,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// What higher layers (env vars, flags) set, as JSON: a key they set is not missing.
    overlay: Option<&'a Json>,
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
        overlay: Option<&'a Json>,
        strict: bool,
    ) -> Self {
        Self {
            root,
            env,
            overlay,
            strict,
            findings: Vec::new(),
            unresolved: HashSet::new(),
        }
    }

    /// A walker for trying one branch of an `anyOf` without committing its findings.
    fn fork(&self) -> Self {
        Self::new(self.root, self.env, self.overlay, self.strict)
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

    /// Checks `value` at `path` against `schema` and returns it expanded and normalised.
    pub(super) fn walk(&mut self, value: &Yaml, schema: &Json, path: &KeyPath) -> Yaml {
        match value {
            // Expanded here, exactly once: `$$` must not turn into a reference on a second pass.
            Yaml::String(raw) => match self.expand(raw, path) {
                Some(expanded) => {
                    let text = Yaml::String(expanded.text);
                    self.check(&text, schema, path, expanded.had_references)
                }
                None => value.clone(),
            },
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
    fn check(&mut self, value: &Yaml, schema: &Json, path: &KeyPath, from_env: bool) -> Yaml {
        let schema = self.resolve(schema);
        let branches = schema.get("anyOf").or_else(|| schema.get("oneOf"));
        if let Some(branches) = branches.and_then(Json::as_array) {
            return self.check_branches(value, branches, path, from_env);
        }
        if let Yaml::Tagged(tagged) = value {
            let message = format!("YAML tags ({}) are not supported here", tagged.tag);
            self.error(path, Anchor::Value(path.clone()), message);
            return value.clone();
        }
        let Some(value) = self.check_type(value, schema, path, from_env) else {
            return value.clone();
        };
        if !self.check_enum(&value, schema, path) {
            return value;
        }
        match value {
            Yaml::Mapping(map) => Yaml::Mapping(self.check_mapping(&map, schema, path)),
            Yaml::Sequence(items) => Yaml::Sequence(self.check_items(&items, schema, path)),
            Yaml::Number(ref n) => {
                self.check_range(n, schema, path);
                value
            }
            other => other,
        }
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
    ) -> Yaml {
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
        value.clone()
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
                Some(s) => self.walk(item, s, &child),
                None => item.clone(),
            };
            out.insert(Yaml::String(name), checked);
        }
        self.check_required(&out, schema, path);
        out
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

    /// A required key that is absent or empty is reported at its parent's key, unless a
    /// higher layer sets it.
    fn check_required(&mut self, map: &Mapping, schema: &Json, path: &KeyPath) {
        let Some(required) = schema.get("required").and_then(Json::as_array) else {
            return;
        };
        for name in required.iter().filter_map(Json::as_str) {
            let child = path.key(name);
            if self.overlay_sets(&child) {
                continue;
            }
            match map.get(name) {
                None => {
                    let message = format!("missing required key '{name}'");
                    self.error(&child, Anchor::Key(path.clone()), message);
                }
                Some(Yaml::Null) => {
                    let message = format!("required key '{name}' has no value");
                    self.error(&child, Anchor::Key(child.clone()), message);
                }
                Some(_) => {}
            }
        }
    }

    fn overlay_sets(&self, path: &KeyPath) -> bool {
        let mut node = match self.overlay {
            Some(node) => node,
            None => return false,
        };
        for segment in path.segments() {
            let next = match segment {
                Segment::Key(key) => node.get(key),
                Segment::Index(index) => node.get(index),
            };
            match next {
                Some(next) => node = next,
                None => return false,
            }
        }
        !node.is_null()
    }

    fn check_items(&mut self, items: &[Yaml], schema: &Json, path: &KeyPath) -> Vec<Yaml> {
        match schema.get("items").filter(|s| s.is_object()) {
            Some(item_schema) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.walk(item, item_schema, &path.index(i)))
                .collect(),
            None => items.to_vec(),
        }
    }

    fn check_range(&mut self, number: &serde_yaml::Number, schema: &Json, path: &KeyPath) {
        let Some(n) = number.as_f64() else { return };
        let bound = |key: &str| schema.get(key).and_then(Json::as_f64);
        let problem = match (bound("minimum"), bound("maximum")) {
            (Some(min), _) if n < min => Some(format!("must be at least {min}")),
            (_, Some(max)) if n > max => Some(format!("must be at most {max}")),
            _ => None,
        };
        if let Some(problem) = problem {
            self.error(
                path,
                Anchor::Value(path.clone()),
                format!("{number} {problem}"),
            );
        }
    }
}

/// The `type` keyword as a list (it may be one name or several).
fn schema_types(schema: &Json) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Json::String(t) => Some(vec![t.as_str()]),
        Json::Array(list) => Some(list.iter().filter_map(Json::as_str).collect()),
        _ => None,
    }
}

/// The JSON Schema type name of a YAML value.
fn kind_of(value: &Yaml) -> &'static str {
    match value {
        Yaml::Null => "null",
        Yaml::Bool(_) => "boolean",
        Yaml::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Yaml::Number(_) => "number",
        Yaml::String(_) => "string",
        Yaml::Sequence(_) => "array",
        Yaml::Mapping(_) => "object",
        Yaml::Tagged(_) => "tagged",
    }
}

fn accepts(types: &[&str], value: &Yaml) -> bool {
    let kind = kind_of(value);
    types.contains(&kind) || (kind == "integer" && types.contains(&"number"))
}

/// Values the loader takes in place of the declared type: a number or boolean where text is
/// meant (`client_id: 12345`), and the text of a `${VAR}` where a number or boolean is meant
/// (`login_timeout: ${TIMEOUT:-300}`), an empty expansion counting as unset.
fn coerce(types: &[&str], value: &Yaml, from_env: bool) -> Option<Yaml> {
    match value {
        Yaml::Number(n) if types.contains(&"string") => Some(Yaml::String(n.to_string())),
        Yaml::Bool(b) if types.contains(&"string") => Some(Yaml::String(b.to_string())),
        Yaml::String(text) if from_env => {
            let text = text.trim();
            if text.is_empty() && types.contains(&"null") {
                return Some(Yaml::Null);
            }
            let parsed: Yaml = serde_yaml::from_str(text).ok()?;
            let fits = matches!(parsed, Yaml::Bool(_) | Yaml::Number(_)) && accepts(types, &parsed);
            fits.then_some(parsed)
        }
        _ => None,
    }
}

fn kind_word(kind: &str) -> &'static str {
    match kind {
        "null" => "nothing",
        "boolean" => "true or false",
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "text",
        "array" => "a list",
        "object" => "a mapping",
        _ => "something else",
    }
}

/// A value for a message: its kind and, for scalars, the value itself.
pub(super) fn describe(value: &Yaml) -> String {
    match value {
        Yaml::Null => "nothing (an empty value)".to_owned(),
        Yaml::Bool(b) => format!("the boolean {b}"),
        Yaml::Number(n) => format!("the number {n}"),
        Yaml::String(s) => format!("the text '{s}'"),
        Yaml::Sequence(_) => "a list".to_owned(),
        Yaml::Mapping(_) => "a mapping".to_owned(),
        Yaml::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn quote_json(value: &Json) -> String {
    match value {
        Json::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(words: &[&str]) -> String {
    match words {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
