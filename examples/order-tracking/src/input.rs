//! A body extractor that takes JSON or an HTML form, so the cookbook's form posts
//! (`update_order.php`) and JSON API calls reach the same handler. A body that is neither, or
//! that does not fit the expected shape, gets 400 with `{"error": …}`.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::{Form, Json};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
            Ok(Self(v))
        } else {
            let Form(v) = Form::<T>::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
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
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(Self(v))
    }
}
