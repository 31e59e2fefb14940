//! Tera, loaded once at start from the built-in templates or a theme (see `assets`).
//! Templates are `*.html`, so Tera escapes every value; message bodies go through the
//! `linkify` filter, which escapes the text itself and is the one filter marked safe. The
//! page also gets a content hash of the static files for cache busting.

use std::collections::HashMap;

use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::assets::{AssetError, Assets, TEMPLATE_NAMES};
use crate::domain::{Crowd, Kind, Message, MessageBody, MessageId, Timestamp, UserName};
use crate::linkify::{escape_html, linkify};

pub struct Templates {
    tera: Tera,
    /// Appended to static URLs as `?v=`: changes whenever a static file changes.
    static_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template error: {0:?}")]
    Tera(#[from] tera::Error),
    #[error(transparent)]
    Assets(#[from] AssetError),
}

/// The chat page's data.
#[derive(Serialize)]
pub struct IndexPage<'a> {
    pub user: &'a str,
    /// Each cached message's `html`, oldest first.
    pub messages: Vec<&'a str>,
    pub cursor: &'a str,
    pub xsrf: &'a str,
    /// The first names of who is online, oldest first; `None` when presence is off.
    pub online: Option<Vec<&'a str>>,
    /// How many are online, and how many of them `online` leaves out.
    pub online_count: usize,
    pub online_more: usize,
}

#[derive(Serialize)]
struct MessageView<'a> {
    id: &'a str,
    from: &'a str,
    body: &'a str,
    /// A notice's names, each with what follows it, then the rest of its sentence (see
    /// `Crowd::sentence`).
    shown: Vec<Shown<'a>>,
    rest: String,
    /// RFC 3339, for `<time datetime>`.
    time: &'a str,
    /// `HH:MM` UTC, what the markup shows before the page's script localises it.
    clock: &'a str,
}

#[derive(Serialize)]
struct Shown<'a> {
    name: &'a str,
    then: &'static str,
}

impl Templates {
    pub fn load(assets: &Assets) -> Result<Self, TemplateError> {
        let mut tera = Tera::default();
        // Parsed now: a broken template stops the start instead of failing a request.
        tera.add_raw_templates(assets.templates()?)?;
        tera.set_escape_fn(escape);
        tera.register_filter("linkify", LinkifyFilter);
        for name in TEMPLATE_NAMES {
            tera.get_template(name)?;
        }
        Ok(Self {
            tera,
            static_version: assets.static_version(),
        })
    }

    /// The `html` of a message: exactly one line, no trailing newline.
    fn render_message(
        &self,
        template: &str,
        view: &MessageView<'_>,
    ) -> Result<String, TemplateError> {
        let context = Context::from_serialize(view)?;
        let mut html = self.tera.render(template, &context)?;
        html.truncate(html.trim_end().len());
        Ok(html)
    }

    pub fn render_index(&self, page: &IndexPage<'_>) -> Result<String, TemplateError> {
        let mut context = Context::from_serialize(page)?;
        context.insert("static_version", &self.static_version);
        Ok(self.tera.render("index.html", &context)?)
    }

    pub fn render_logout(&self) -> Result<String, TemplateError> {
        let mut context = Context::new();
        context.insert("static_version", &self.static_version);
        Ok(self.tera.render("logout.html", &context)?)
    }

    /// A ready-made entry from its parts and the id the store gave it: a post, rendered
    /// by `message.html`, or a notice, by `notice.html`.
    pub fn build_message(
        &self,
        id: MessageId,
        from: &UserName,
        body: MessageBody,
        kind: Kind,
        crowd: Option<Crowd>,
    ) -> Result<Message, TemplateError> {
        let time = Timestamp::of(&id);
        let template = match kind {
            Kind::Message => "message.html",
            Kind::Join | Kind::Leave => "notice.html",
        };
        let (shown, rest) = crowd
            .as_ref()
            .map(|crowd| crowd.sentence(kind))
            .unwrap_or_default();
        let html = self.render_message(
            template,
            &MessageView {
                id: id.as_str(),
                from: from.as_str(),
                body: body.as_str(),
                shown: shown
                    .into_iter()
                    .map(|(name, then)| Shown { name, then })
                    .collect(),
                rest,
                time: &time.rfc3339(),
                clock: &time.clock(),
            },
        )?;
        Ok(Message {
            id,
            from: from.clone(),
            body,
            html: html.into(),
            time,
            kind,
            crowd,
        })
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_html(text, &mut out);
    out
}

struct LinkifyFilter;

impl tera::Filter for LinkifyFilter {
    fn filter(&self, value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
        let text = value.as_str().ok_or("linkify takes a string")?;
        Ok(Value::String(linkify(text)))
    }

    /// The output is escaped by `linkify` itself; escaping it again would break the links.
    fn is_safe(&self) -> bool {
        true
    }
}
