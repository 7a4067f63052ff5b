//! Demo sign-in: a seeded user is picked on the login page and gets a random session token in an
//! `HttpOnly` cookie, stored in the `sessions` table.
//!
//! There are no passwords: the demo shows realtime tracking, not account security. This module
//! never decides what a user may do beyond "signed in" and "has role X"; the handlers do.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use rand::Rng;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::limits::{SESSION_MAX_AGE_SECS, SESSION_TOKEN_BYTES};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "shop_session";

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The id (also the `private-user-{id}` channel and the mobile `userIdentifier`).
    pub id: i64,
    /// Display name.
    pub name: String,
    /// `customer`, `manager` or `courier`.
    pub role: String,
}

/// The signed-in user, if any; never refuses by itself.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl MaybeUser {
    /// The user, or 401 when nobody is signed in.
    pub fn signed_in(self) -> ApiResult<User> {
        self.0.ok_or_else(ApiError::unauthorized)
    }

    /// The user if they have `role`: 401 when nobody is signed in, 403 for another role.
    pub fn with_role(self, role: &str) -> ApiResult<User> {
        let user = self.signed_in()?;
        if user.role == role {
            Ok(user)
        } else {
            Err(ApiError::forbidden())
        }
    }
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = token_from(&parts.headers) else {
            return Ok(Self(None));
        };
        let user = state
            .db
            .run(move |c| {
                let oldest = now() - SESSION_MAX_AGE_SECS;
                Ok(c.query_row(
                    "SELECT u.id, u.name, u.role FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token = ?1 AND s.created_at >= ?2",
                    rusqlite::params![token, oldest],
                    |r| {
                        Ok(User {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            role: r.get(2)?,
                        })
                    },
                )
                .optional()?)
            })
            .await?;
        Ok(Self(user))
    }
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The seeded user to act as.
    pub user_id: i64,
}

/// `POST /login`: starts a session for a seeded user and sends them to their page.
pub async fn login(
    State(state): State<AppState>,
    Form(form): Form<LoginForm>,
) -> ApiResult<Response> {
    let token: String = {
        let mut rng = rand::rng();
        (0..SESSION_TOKEN_BYTES)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect()
    };
    let t = token.clone();
    let role = state
        .db
        .run(move |c| {
            let role: Option<String> = c
                .query_row(
                    "SELECT role FROM users WHERE id = ?1",
                    [form.user_id],
                    |r| r.get(0),
                )
                .optional()?;
            let role = role.ok_or_else(|| ApiError::not_found("user"))?;
            c.execute(
                "DELETE FROM sessions WHERE created_at < ?1",
                [now() - SESSION_MAX_AGE_SECS],
            )?;
            c.execute(
                "INSERT INTO sessions (token, user_id, created_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![t, form.user_id, now()],
            )?;
            Ok(role)
        })
        .await?;
    let to = match role.as_str() {
        "manager" => "/manager",
        "courier" => "/courier",
        _ => "/",
    };
    let cookie =
        format!("{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={SESSION_MAX_AGE_SECS}");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response())
}

/// `POST /logout`: ends the session.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = token_from(&headers) {
        state
            .db
            .run(move |c| {
                c.execute("DELETE FROM sessions WHERE token = ?1", [token])?;
                Ok(())
            })
            .await?;
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/login".into()),
        ],
    )
        .into_response())
}
