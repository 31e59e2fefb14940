//! The route table, used by the server and the tests alike.

mod auth;
mod extract;
mod health;
mod message;
mod page;
mod pieces;
mod presence;
mod socket;

use actix_files::Files;
use actix_web::middleware::DefaultHeaders;
use actix_web::web;

use crate::assets::{self, Assets, EmbeddedStatic};
use crate::auth::LoginReader;
use crate::state::AppState;

/// What the routes are built from; made once, shared by every worker.
pub struct Routes {
    pub state: web::Data<AppState>,
    pub logins: web::Data<LoginReader>,
    pub embedded: web::Data<EmbeddedStatic>,
    pub assets: Assets,
}

pub fn configure(cfg: &mut web::ServiceConfig, routes: &Routes) {
    cfg.app_data(routes.state.clone())
        .app_data(routes.logins.clone())
        .service(
            web::resource("/")
                .wrap(page_headers())
                .route(web::get().to(page::show_chat)),
        )
        .service(
            web::scope("/auth")
                .wrap(page_headers())
                .route("/login", web::get().to(auth::log_in))
                .route("/logout", web::get().to(auth::log_out)),
        )
        .route("/a/message/new", web::post().to(message::post_message))
        .route("/a/message/updates", web::post().to(message::poll_updates))
        .route("/a/message/socket", web::get().to(socket::open_socket))
        .route("/a/presence", web::get().to(presence::show_presence))
        // Browsers and tools that ask for the classic name get the page's icon.
        .route(
            "/favicon.ico",
            web::get().to(|| async {
                actix_web::HttpResponse::MovedPermanently()
                    .insert_header(("Location", "/static/favicon.svg"))
                    .finish()
            }),
        )
        .route("/healthz", web::get().to(health::healthz))
        .route("/metrics", web::get().to(health::metrics));
    // The page links static files with `?v=<content hash>`, so a day is safe.
    let cached = DefaultHeaders::new().add(("Cache-Control", "public, max-age=86400"));
    match &routes.assets {
        Assets::Embedded => cfg.service(
            web::resource("/static/{name}")
                .app_data(routes.embedded.clone())
                .wrap(cached)
                .route(web::get().to(assets::serve_embedded))
                .route(web::head().to(assets::serve_embedded)),
        ),
        Assets::Directory(dir) => cfg.service(
            web::scope("/static").wrap(cached).service(
                Files::new("", dir.join("static"))
                    .use_etag(true)
                    .use_last_modified(true),
            ),
        ),
    };
}

/// Headers for HTML pages: scripts and connections from this origin only, no framing.
/// JSON answers and frames are not documents, so the hot paths do not carry them.
fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
}
