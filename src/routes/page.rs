//! `GET /`: the chat page.

use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use bytes::Bytes;

use super::pieces::Pieces;
use crate::auth::{CurrentUser, Login};
use crate::error::AppError;
use crate::presence::Rows;
use crate::state::AppState;
use crate::templates::IndexPage;
use crate::xsrf;

pub(super) async fn show_chat(
    req: HttpRequest,
    user: Option<CurrentUser>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let Some(CurrentUser(login)) = user else {
        return Ok(redirect_to_login(&req));
    };
    let snapshot = state.room.hub.snapshot().await?;
    let who = state.presence.who(Rows::DEFAULT).await;
    let (token, new_cookie) = page_token(&req, &state, &login);
    // Rendered with a mark for each message, then written out with each message's own
    // shared bytes in its place: a page is a few KiB of its own, whatever the history.
    let html = state
        .templates
        .render_index(&IndexPage {
            user: login.name.as_str(),
            messages: vec![MARK; snapshot.entries.len()],
            cursor: snapshot.cursor.as_str(),
            xsrf: &token,
            online: who
                .as_ref()
                .map(|w| w.users.iter().map(|u| u.name.as_str()).collect()),
            online_count: who.as_ref().map_or(0, |w| w.count),
            online_more: who
                .as_ref()
                .map_or(0, |w| w.count.saturating_sub(w.users.len())),
        })
        .map_err(AppError::internal)?;
    let messages = snapshot.entries.iter().map(|e| e.message.html.as_bytes());
    let (len, pieces) = fill_marks(Bytes::from(html), messages);
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(cookie) = new_cookie {
        response.cookie(cookie);
    }
    Ok(response.body(Pieces::new(len, pieces.into_iter())))
}

/// Where a message goes in the rendered page: a control character that nothing else in
/// the page can hold (names, tokens and cursors are checked; template text has none).
const MARK: &str = "\u{1}";

/// The page's pieces: its own text between the marks (slices of `page`, no copy) and each
/// message's bytes in place of its mark. Marks beyond the messages (a theme that prints
/// one twice) are dropped.
fn fill_marks<'a>(
    page: Bytes,
    mut messages: impl Iterator<Item = &'a Bytes>,
) -> (usize, Vec<Bytes>) {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (at, _) in page
        .as_ref()
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == MARK.as_bytes()[0])
    {
        pieces.push(page.slice(start..at));
        if let Some(message) = messages.next() {
            pieces.push(message.clone());
        }
        start = at + 1;
    }
    pieces.push(page.slice(start..));
    let len = pieces.iter().map(Bytes::len).sum();
    (len, pieces)
}

/// 302 to the login page, coming back here afterwards (as Tornado's `@authenticated`).
fn redirect_to_login(req: &HttpRequest) -> HttpResponse {
    let here = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    HttpResponse::Found()
        .insert_header((header::LOCATION, format!("/auth/login?next={next}")))
        .finish()
}

/// The XSRF token for the page's form: the browser's `_xsrf` cookie when it is valid for
/// this login, else a new one (and the cookie to set).
fn page_token(
    req: &HttpRequest,
    state: &AppState,
    login: &Login,
) -> (String, Option<Cookie<'static>>) {
    if let Some(cookie) = req.cookie(xsrf::COOKIE_NAME) {
        if state.xsrf.is_valid(&login.id.as_str(), cookie.value()) {
            return (cookie.value().to_owned(), None);
        }
    }
    let token = state.xsrf.issue(&login.id.as_str());
    let http = &state.http;
    let cookie = xsrf::cookie(token.clone(), http.cookie_secure, http.cookie_max_age_days);
    (token, Some(cookie))
}
