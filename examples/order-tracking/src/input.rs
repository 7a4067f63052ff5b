//! Extractors whose refusals are JSON: a body that takes JSON or an HTML form (so the cookbook's
//! form posts, `update_order.php`, and JSON API calls reach the same handler), JSON only, and a
//! numeric path id. A body or id that does not fit gets its 4xx (400, 413, 415) with
//! `{"error": …}`, never axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::{Form, Json};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// axum's body rejection as our error. A body of the wrong shape is 400 here (axum says 422):
/// 422 is kept for the inSales rule that the statuses do not match.
fn refusal(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        ApiError::bad_request(text)
    } else {
        ApiError::new(status, text)
    }
}

/// The body, decoded from JSON when the content type says so, else from a form.
#[derive(Debug)]
pub struct Input<T>(pub T);

impl<S, T> FromRequest<S> for Input<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if json {
            let Json(v) = Json::<T>::from_request(req, state)
                .await
                .map_err(|e| refusal(e.status(), e.body_text()))?;
            Ok(Self(v))
        } else {
            let Form(v) = Form::<T>::from_request(req, state)
                .await
                .map_err(|e| refusal(e.status(), e.body_text()))?;
            Ok(Self(v))
        }
    }
}

/// JSON only, with a 400 `{"error": …}` instead of axum's plain-text rejection.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state)
            .await
            .map_err(|e| refusal(e.status(), e.body_text()))?;
        Ok(Self(v))
    }
}

/// A numeric id from the path (`/orders/{id}`); anything else gets 400 `{"error": …}`.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the id in the path must be a number: {}",
                    e.body_text()
                ))
            })?;
        Ok(Self(id))
    }
}
