//! Custom statuses (`admin/custom_statuses.json` and `.xml`): list (creating the missing system
//! defaults), create with a unique permalink from the title, partial update. Colours come from the
//! palette only, and each system status keeps exactly one default. Each route answers in the
//! format its extension names, refusals included; both formats run the same functions. This
//! module never touches orders.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::{params, Connection};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{basic_auth, xml};
use crate::db::{iso, now};
use crate::error::{ApiError, ApiResult};
use crate::input::JsonBody;
use crate::limits::{MAX_CUSTOM_STATUSES, MAX_TITLE_LEN};
use crate::orders::{self, CustomStatus};
use crate::status::{self, PALETTE};
use crate::AppState;

fn custom_json(s: &CustomStatus) -> Value {
    json!({
        "id": s.id,
        "title": s.title,
        "permalink": s.permalink,
        "system_status": s.system_status,
        "color": s.color,
        "is_default": s.is_default,
        "position": s.position,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
    })
}

/// Every custom status, after creating the missing system defaults.
async fn list(state: &AppState) -> ApiResult<Vec<CustomStatus>> {
    state
        .db
        .run(|c| {
            let tx = c.transaction()?;
            orders::ensure_defaults(&tx)?;
            let list = orders::custom_statuses(&tx)?;
            tx.commit()?;
            Ok(list)
        })
        .await
}

/// `GET /admin/custom_statuses.json`: a bare array; creates the missing system defaults first.
pub async fn list_custom_statuses(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let list = list(&state).await?;
    Ok(Json(Value::Array(list.iter().map(custom_json).collect())))
}

/// `GET /admin/custom_statuses.xml`: the same list as `<custom-statuses type="array">`.
pub async fn list_custom_statuses_xml(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        basic_auth(&state, &headers)?;
        list(&state).await
    };
    match answer.await {
        Ok(list) => xml::response(
            StatusCode::OK,
            xml::array(
                "custom_statuses",
                "custom_status",
                &list.iter().map(custom_json).collect::<Vec<_>>(),
            ),
        ),
        Err(e) => xml::error(e),
    }
}

/// The fields of a custom status a client may send.
#[derive(Debug, Deserialize)]
pub struct CustomStatusFields {
    /// Required on create.
    #[serde(default)]
    pub system_status: Option<String>,
    /// Required on create.
    #[serde(default)]
    pub title: Option<String>,
    /// A palette colour.
    #[serde(default)]
    pub color: Option<String>,
    /// Makes it the default of its system status (unsetting the previous one).
    #[serde(default)]
    pub is_default: Option<bool>,
    /// Position in the back office.
    #[serde(default)]
    pub position: Option<i64>,
}

/// `{"custom_status": {…}}`.
#[derive(Debug, Deserialize)]
pub struct CustomStatusBody {
    /// The fields.
    pub custom_status: CustomStatusFields,
}

fn check_fields(f: &CustomStatusFields) -> ApiResult<()> {
    if let Some(c) = &f.color {
        if !PALETTE.contains(&c.to_uppercase().as_str()) {
            return Err(ApiError::bad_request(format!(
                "color must be one of the palette: {}",
                PALETTE.join(" ")
            )));
        }
    }
    if let Some(t) = &f.title {
        if t.trim().is_empty() || t.chars().count() > MAX_TITLE_LEN {
            return Err(ApiError::bad_request(format!(
                "title must be 1 to {MAX_TITLE_LEN} characters"
            )));
        }
    }
    if f.position.is_some_and(|p| p < 0) {
        return Err(ApiError::bad_request("position must not be negative"));
    }
    Ok(())
}

fn unique_permalink(c: &Connection, title: &str) -> rusqlite::Result<String> {
    let base = match status::slugify(title) {
        s if s.is_empty() => "status".to_owned(),
        s => s,
    };
    let mut candidate = base.clone();
    let mut n = 2;
    while orders::custom_status(c, &candidate)?.is_some() || status::is_system(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    Ok(candidate)
}

/// Reads `<custom-status>…</custom-status>` into the fields a client may send: 415 unless the
/// content type is XML, 400 for a body that is not one flat `custom-status` record or whose
/// `is-default` or `position` do not parse.
fn fields_from_xml(headers: &HeaderMap, body: &[u8]) -> ApiResult<CustomStatusFields> {
    let xml_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/xml") || v.starts_with("text/xml"));
    if !xml_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/xml`",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    let record = xml::parse_record(text)
        .map_err(|e| ApiError::bad_request(format!("body is not a custom-status record: {e}")))?;
    if record.root != "custom_status" {
        return Err(ApiError::bad_request(
            "the root element must be <custom-status>",
        ));
    }
    let is_default = match record.get("is_default") {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "is-default must be true or false, not {other:?}"
            )))
        }
    };
    let position = record
        .get("position")
        .map(|p| {
            p.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("position must be an integer"))
        })
        .transpose()?;
    Ok(CustomStatusFields {
        system_status: record.get("system_status").map(str::to_owned),
        title: record.get("title").map(str::to_owned),
        color: record.get("color").map(str::to_owned),
        is_default,
        position,
    })
}

/// `POST /admin/custom_statuses.json`: answers the bare new object (201).
pub async fn create_custom_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CustomStatusBody>,
) -> ApiResult<Response> {
    basic_auth(&state, &headers)?;
    let created = create(&state, body.custom_status).await?;
    Ok((StatusCode::CREATED, Json(custom_json(&created))).into_response())
}

/// `POST /admin/custom_statuses.xml` with `<custom-status>…</custom-status>`: answers the new
/// `<custom-status>` (201).
pub async fn create_custom_status_xml(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        basic_auth(&state, &headers)?;
        create(&state, fields_from_xml(&headers, &body)?).await
    };
    match answer.await {
        Ok(s) => xml::response(
            StatusCode::CREATED,
            xml::object("custom_status", &custom_json(&s)),
        ),
        Err(e) => xml::error(e),
    }
}

/// Creates a custom status from the client's fields.
async fn create(state: &AppState, f: CustomStatusFields) -> ApiResult<CustomStatus> {
    check_fields(&f)?;
    let system = f
        .system_status
        .clone()
        .filter(|s| status::is_system(s))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "system_status must be one of {}",
                status::SYSTEM_STATUSES.join(", ")
            ))
        })?;
    let title = f
        .title
        .clone()
        .ok_or_else(|| ApiError::bad_request("title is required"))?;
    state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let count: i64 = tx.query_row(
                "SELECT count(*) FROM custom_statuses WHERE system_status = ?1",
                [&system],
                |r| r.get(0),
            )?;
            if count >= MAX_CUSTOM_STATUSES {
                return Err(ApiError::bad_request(format!(
                    "a system status takes at most {MAX_CUSTOM_STATUSES} custom statuses"
                )));
            }
            let permalink = unique_permalink(&tx, &title)?;
            let total: i64 =
                tx.query_row("SELECT count(*) FROM custom_statuses", [], |r| r.get(0))?;
            let color = f
                .color
                .map(|c| c.to_uppercase())
                .unwrap_or_else(|| PALETTE[(total as usize) % PALETTE.len()].to_owned());
            let is_default = f.is_default.unwrap_or(false);
            if is_default {
                tx.execute(
                    "UPDATE custom_statuses SET is_default = 0 WHERE system_status = ?1",
                    [&system],
                )?;
            }
            let t = now();
            tx.execute(
                "INSERT INTO custom_statuses (permalink, title, system_status, color, is_default, position, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![permalink, title.trim(), system, color, is_default, f.position.unwrap_or(count + 1), t],
            )?;
            let s = orders::custom_status(&tx, &permalink)?
                .ok_or_else(|| ApiError::internal("custom status vanished"))?;
            tx.commit()?;
            Ok(s)
        })
        .await
}

/// `PUT /admin/custom_statuses/{permalink}.json` (a partial update → `{"status":"ok"}`) and
/// `PUT /admin/custom_statuses/{permalink}.xml` (`<custom-status>` → `<hash><status>ok</status>`,
/// what Rails writes for that answer). Any other extension is 404.
pub async fn update_custom_status(
    State(state): State<AppState>,
    Path(file): Path<String>,
    req: Request,
) -> Response {
    if let Some(permalink) = file.strip_suffix(".xml") {
        let permalink = permalink.to_owned();
        let headers = req.headers().clone();
        let answer = async {
            basic_auth(&state, &headers)?;
            let body = Bytes::from_request(req, &state)
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
            update(&state, permalink, fields_from_xml(&headers, &body)?).await
        };
        return match answer.await {
            Ok(()) => xml::response(
                StatusCode::OK,
                xml::object("hash", &json!({"status": "ok"})),
            ),
            Err(e) => xml::error(e),
        };
    }
    let answer = async {
        basic_auth(&state, req.headers())?;
        let permalink = file
            .strip_suffix(".json")
            .ok_or_else(|| ApiError::not_found("custom status"))?
            .to_owned();
        let JsonBody(body) = JsonBody::<CustomStatusBody>::from_request(req, &state).await?;
        update(&state, permalink, body.custom_status).await
    };
    match answer.await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Updates the fields given of custom status `permalink`.
async fn update(state: &AppState, permalink: String, f: CustomStatusFields) -> ApiResult<()> {
    check_fields(&f)?;
    if f.system_status.is_some() {
        return Err(ApiError::bad_request("system_status cannot be changed"));
    }
    state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let s = orders::custom_status(&tx, &permalink)?
                .ok_or_else(|| ApiError::not_found("custom status"))?;
            if f.is_default == Some(false) && s.is_default {
                return Err(ApiError::bad_request(
                    "make another status the default instead of unsetting this one",
                ));
            }
            if f.is_default == Some(true) {
                tx.execute(
                    "UPDATE custom_statuses SET is_default = 0 WHERE system_status = ?1",
                    [&s.system_status],
                )?;
            }
            tx.execute(
                "UPDATE custom_statuses SET title = COALESCE(?2, title), color = COALESCE(?3, color),
                   is_default = COALESCE(?4, is_default), position = COALESCE(?5, position), updated_at = ?6
                 WHERE id = ?1",
                params![
                    s.id,
                    f.title.map(|t| t.trim().to_owned()),
                    f.color.map(|c| c.to_uppercase()),
                    f.is_default,
                    f.position,
                    now()
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
}
