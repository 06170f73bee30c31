//! `docs/openapi.yaml` against the code: fails when the contract drifts from the routers or
//! the error codes.
//!
//! - Routes: every `.route("…", …)` of the six routers (`shared/server/src/*/routes.rs`),
//!   with the methods chained on it, is an operation in the document, and the document has
//!   no operation the routers do not serve.
//! - Authentication: an operation whose handler takes `Signed<…>` / `SelfSigned<…>` declares
//!   the four signature headers and a `401`; one that takes `InSession` declares the session
//!   header and a `401`; the others declare neither.
//! - Errors: the `ErrorCode` enum of the document is exactly the serde names of
//!   `cinder_proto::ErrorCode`, and every error response carries `ErrorBody`.
//! - The document is YAML and declares `openapi: 3.1.x`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cinder_proto::ErrorCode;
use serde_json::Value;

const ROUTERS: [&str; 6] = ["keys", "accounts", "spine", "shards", "media", "calls"];
const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn document() -> Value {
    let path = root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not YAML: {e}"));
    serde_json::to_value(yaml).expect("the document maps to JSON")
}

/// How a handler authenticates, read from its parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Signed,
    Session,
    /// A session and a re-authentication token (`x-cinder-reauth`).
    Reauthenticated,
    /// A relay's announcement: a MAC under the secret shared with the TURN relays.
    Relay,
}

/// One served operation: (path template, lowercase method) → how it authenticates.
type Routes = BTreeMap<(String, String), Auth>;

/// Index of the parenthesis closing the one opened just before `from`.
fn closing_paren(text: &str, from: usize) -> usize {
    let mut depth = 1usize;
    let mut in_str = false;
    for (i, c) in text[from..].char_indices() {
        match c {
            '"' => in_str = !in_str,
            '(' if !in_str => depth += 1,
            ')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return from + i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after byte {from}");
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `(method, handler)` pairs in a method router expression like
/// `axum::routing::get(get).put(update).delete(delete)`.
fn methods_in(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in expr.char_indices() {
        if i > 0 && expr[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        for m in METHODS {
            let Some(rest) = expr[i..].strip_prefix(m) else {
                continue;
            };
            let Some(args) = rest.strip_prefix('(') else {
                continue;
            };
            let end = closing_paren(args, 0);
            out.push((m.to_owned(), args[..end].trim().to_owned()));
        }
    }
    out
}

/// How `handler`, an `async fn` in `source`, authenticates.
fn auth_of(source: &str, handler: &str, file: &str) -> Auth {
    let start = source
        .find(&format!("async fn {handler}("))
        .unwrap_or_else(|| panic!("{file}: no `async fn {handler}(`"));
    let params_from = start + "async fn ".len() + handler.len() + 1;
    let params = &source[params_from..closing_paren(source, params_from)];
    if params.contains("Signed<") {
        Auth::Signed
    } else if params.contains("InSession") && params.contains("ReauthToken") {
        Auth::Reauthenticated
    } else if params.contains("InSession") {
        Auth::Session
    } else if params.contains("RelayProof") {
        Auth::Relay
    } else {
        Auth::None
    }
}

/// Every operation the six routers serve, parsed from their source.
fn served_routes() -> Routes {
    let mut routes = Routes::new();
    for router in ROUTERS {
        let file = format!("shared/server/src/{router}/routes.rs");
        let source = std::fs::read_to_string(root().join(&file)).unwrap();
        let mut found = 0;
        for (at, _) in source.match_indices(".route(") {
            let args_from = at + ".route(".len();
            let args = &source[args_from..closing_paren(&source, args_from)];
            let args = args.trim_start();
            let path_end = args[1..].find('"').expect("a string literal path") + 1;
            assert!(
                args.starts_with('"'),
                "{file}: a route path that is not a literal"
            );
            let path = &args[1..path_end];
            let methods = methods_in(&args[path_end + 1..]);
            assert!(!methods.is_empty(), "{file}: no methods on {path}");
            for (method, handler) in methods {
                let auth = auth_of(&source, &handler, &file);
                let clash = routes.insert((path.to_owned(), method.clone()), auth);
                assert!(clash.is_none(), "{method} {path} is routed twice");
                found += 1;
            }
        }
        assert!(found > 0, "{file}: no routes found; has the router moved?");
    }
    routes
}

/// Every operation of the document, with how its `security` says it authenticates.
fn documented_routes(doc: &Value) -> Routes {
    let mut routes = Routes::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let schemes: BTreeSet<String> = op["security"]
                .as_array()
                .map(|alternatives| {
                    alternatives
                        .iter()
                        .flat_map(|req| req.as_object().unwrap().keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            let signed: BTreeSet<String> = ["signer", "timestamp", "nonce", "signature"]
                .map(String::from)
                .into();
            let auth = if schemes.is_empty() {
                Auth::None
            } else if schemes == signed {
                Auth::Signed
            } else if schemes == BTreeSet::from(["session".to_owned()]) {
                Auth::Session
            } else if schemes == BTreeSet::from(["session".to_owned(), "reauth".to_owned()]) {
                Auth::Reauthenticated
            } else if schemes == BTreeSet::from(["relay".to_owned()]) {
                Auth::Relay
            } else {
                panic!("{method} {path}: unexpected security {schemes:?}");
            };
            routes.insert((path.clone(), method.clone()), auth);
        }
    }
    routes
}

#[test]
fn document_is_openapi_3_1() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("an `openapi` string");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
}

#[test]
fn every_served_route_is_documented_and_nothing_else() {
    let served = served_routes();
    let documented = documented_routes(&document());
    let served_keys: BTreeSet<_> = served.keys().collect();
    let documented_keys: BTreeSet<_> = documented.keys().collect();
    let undocumented: Vec<_> = served_keys.difference(&documented_keys).collect();
    let unserved: Vec<_> = documented_keys.difference(&served_keys).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes drifted from docs/openapi.yaml:\n  served but not documented: {undocumented:?}\n  documented but not served: {unserved:?}"
    );
    // 31 when this test was written; a sanity floor against a parser that finds nothing.
    assert!(served.len() >= 31, "only {} routes parsed", served.len());
}

#[test]
fn documented_authentication_matches_the_handlers() {
    let doc = document();
    let documented = documented_routes(&doc);
    for ((path, method), auth) in served_routes() {
        let declared = documented.get(&(path.clone(), method.clone()));
        assert_eq!(
            declared,
            Some(&auth),
            "{method} {path}: the handler authenticates as {auth:?}"
        );
        let responses = &doc["paths"][&path][&method]["responses"];
        // (Unauthenticated routes may answer 401 too: a failed login finish.)
        assert!(
            auth == Auth::None || responses.get("401").is_some(),
            "{method} {path}: an authenticated route must document 401"
        );
    }
}

/// Every variant of `ErrorCode`. The match fails to compile when a variant is added, so
/// this list cannot silently fall behind.
fn all_error_codes() -> Vec<ErrorCode> {
    use ErrorCode as C;
    let all = vec![
        C::MalformedJson,
        C::InvalidBody,
        C::InvalidParameter,
        C::BodyTooLarge,
        C::Unauthenticated,
        C::StaleRequest,
        C::ReplayedRequest,
        C::Forbidden,
        C::UnknownUser,
        C::NotFound,
        C::AlreadyExists,
        C::VersionConflict,
        C::InvalidBundle,
        C::InvalidRotation,
        C::LimitExceeded,
        C::NoRoute,
        C::MethodNotAllowed,
        C::RateLimited,
        C::ReauthRequired,
        C::NumberTaken,
        C::RequestTimeout,
        C::Internal,
        C::Unavailable,
    ];
    for code in &all {
        match code {
            C::MalformedJson
            | C::InvalidBody
            | C::InvalidParameter
            | C::BodyTooLarge
            | C::Unauthenticated
            | C::StaleRequest
            | C::ReplayedRequest
            | C::Forbidden
            | C::UnknownUser
            | C::NotFound
            | C::AlreadyExists
            | C::VersionConflict
            | C::InvalidBundle
            | C::InvalidRotation
            | C::LimitExceeded
            | C::NoRoute
            | C::MethodNotAllowed
            | C::RateLimited
            | C::ReauthRequired
            | C::NumberTaken
            | C::RequestTimeout
            | C::Internal
            | C::Unavailable => {}
        }
    }
    all
}

/// Variant names of `enum ErrorCode` in shared/proto/src/api.rs, in source order.
fn error_code_variants_in_source() -> Vec<String> {
    let source = std::fs::read_to_string(root().join("shared/proto/src/api.rs")).unwrap();
    let start = source.find("pub enum ErrorCode {").expect("enum ErrorCode") + 20;
    let end = start + source[start..].find('}').unwrap();
    source[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#["))
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn error_code_enum_is_exactly_the_codes() {
    let doc = document();
    let documented: Vec<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("components.schemas.ErrorCode.enum")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let documented_set: BTreeSet<_> = documented.iter().cloned().collect();
    assert_eq!(documented.len(), documented_set.len(), "duplicate codes");

    let codes = all_error_codes();
    let wire: BTreeSet<String> = codes
        .iter()
        .map(|c| match serde_json::to_value(c).unwrap() {
            Value::String(s) => s,
            other => panic!("{c:?} serialized as {other}"),
        })
        .collect();
    assert_eq!(
        documented_set, wire,
        "ErrorCode enum in docs/openapi.yaml differs from cinder_proto::ErrorCode"
    );
    // The hand list above against the source, so a new variant cannot hide behind it.
    let variants = error_code_variants_in_source();
    assert_eq!(
        variants.len(),
        codes.len(),
        "variants in source: {variants:?}"
    );
    for code in &codes {
        assert!(
            variants.contains(&format!("{code:?}")),
            "{code:?} not in source"
        );
        let back: ErrorCode = serde_json::from_value(serde_json::to_value(code).unwrap()).unwrap();
        assert_eq!(&back, code);
    }
}

#[test]
fn every_error_response_is_the_error_body() {
    let doc = document();
    let body = &doc["components"]["schemas"]["ErrorBody"];
    let required: BTreeSet<&str> = body["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message"]));
    let props: BTreeSet<&str> = body["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        props,
        BTreeSet::from(["code", "field", "message", "reserved"])
    );

    let responses = doc["components"]["responses"].as_object().unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let answers = op["responses"].as_object().unwrap();
            assert!(answers.contains_key("500"), "{method} {path}: no 500");
            for (status, answer) in answers {
                if status.starts_with('2') {
                    continue;
                }
                let answer = match answer["$ref"].as_str() {
                    Some(r) => &responses[r.trim_start_matches("#/components/responses/")],
                    None => answer,
                };
                assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}: not the error body"
                );
            }
        }
    }
}
