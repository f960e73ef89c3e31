//! The one error shape of every route: a status and `{"error": "..."}`.

use crate::store::{looks_like_path, ModelName, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

/// An HTTP error with a message a client can act on.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound { .. } | StoreError::NoFile(_) => StatusCode::NOT_FOUND,
            StoreError::BadName { .. } | StoreError::BadSpec(_) => StatusCode::BAD_REQUEST,
            StoreError::ReadOnly(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// The bytes of a request body, or the 413/400 axum found reading it.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

/// Parses a JSON request body into `T`: 400 when it is blank, malformed or has fields
/// of the wrong type (a body over the limit is a 413 from [`body_bytes`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// A model name from a request, checked against the store's rules: never a path or a
/// URL. Returns the canonical `family:tag`.
pub fn model_name(raw: &str) -> Result<String, ApiError> {
    if raw.trim().is_empty() {
        return Err(ApiError::bad_request("\"model\" is required"));
    }
    let raw = raw.trim();
    // An ollama name with a namespace (`user/model:tag`, `host/ns/model:tag`): only ever
    // compared with the names found in ollama's store, never used as a path.
    if raw.contains('/')
        && !crate::store::pull::is_hf_spec(raw)
        && !raw.contains("://")
        && crate::store::external::ollama_key(raw).is_some()
    {
        // Canonical as ollama shows it: the tag spelled out (`user/model:latest`).
        return Ok(match raw.rsplit_once(':') {
            Some((_, tag)) if !tag.contains('/') => raw.to_string(),
            _ => format!("{raw}:latest"),
        });
    }
    if looks_like_path(raw) || raw.contains("://") || raw.contains('\\') {
        return Err(ApiError::bad_request(format!(
            "invalid model name {raw:?}: file paths and URLs are not accepted, only names in the model store"
        )));
    }
    let name = crate::store::pull::name_for_spec(raw)?;
    // Round-trip through the name parser: the spec rules must not widen the name rules.
    ModelName::parse(&name.to_string())?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::model_name;

    #[test]
    fn namespaced_names_are_canonical_and_paths_are_not_names() {
        assert_eq!(model_name("user/model").unwrap(), "user/model:latest");
        assert_eq!(model_name(" user/model:q4 ").unwrap(), "user/model:q4");
        assert_eq!(
            model_name("registry.example/ns/m").unwrap(),
            "registry.example/ns/m:latest"
        );
        assert!(model_name("smollm2").unwrap().contains(':'));
        for bad in [
            "",
            "../x",
            "a/../b",
            "a/b/c/d",
            "/etc/passwd",
            "C:\\x",
            "http://h/m",
        ] {
            assert!(model_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
