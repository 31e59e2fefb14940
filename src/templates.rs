//! Tera, loaded once at start. Templates are `*.html`, so Tera escapes every value; message
//! bodies go through the `linkify` filter, which escapes the text itself and is the one
//! filter marked safe. The page also gets a content hash of `static/` for cache busting.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::{Context, Tera, Value};

use crate::domain::Message;
use crate::linkify::{escape_html, linkify};

pub struct Templates {
    tera: Tera,
    /// Appended to static URLs as `?v=`: changes whenever a static file changes.
    static_version: String,
}

#[derive(Debug, thiserror::Error)]
#[error("template error: {0:?}")]
pub struct TemplateError(#[from] tera::Error);

/// The chat page's data.
#[derive(Serialize)]
pub struct IndexPage<'a> {
    pub user: &'a str,
    /// Each cached message's `html`, oldest first.
    pub messages: Vec<&'a str>,
    pub cursor: &'a str,
    pub xsrf: &'a str,
}

#[derive(Serialize)]
struct MessageView<'a> {
    id: &'a str,
    from: &'a str,
    body: &'a str,
}

impl Templates {
    pub fn load(template_dir: &Path, static_dir: &Path) -> Result<Self, TemplateError> {
        let mut tera = Tera::new(&format!("{}/**/*.html", template_dir.display()))?;
        tera.set_escape_fn(escape);
        tera.register_filter("linkify", LinkifyFilter);
        // Fail at start, not on the first request, if a template is missing.
        for name in ["index.html", "message.html", "logout.html"] {
            tera.get_template(name)?;
        }
        Ok(Self {
            tera,
            static_version: hash_dir(static_dir),
        })
    }

    /// The `html` of a message: exactly one line, no trailing newline.
    pub fn render_message(
        &self,
        id: &str,
        from: &str,
        body: &str,
    ) -> Result<String, TemplateError> {
        let context = Context::from_serialize(MessageView { id, from, body })?;
        let mut html = self.tera.render("message.html", &context)?;
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
}

/// A ready-made message from its parts (the id is fresh).
pub fn build_message(
    templates: &Templates,
    from: &str,
    body: &str,
) -> Result<Message, TemplateError> {
    let id = crate::domain::new_message_id();
    let html = templates.render_message(&id, from, body)?;
    Ok(Message {
        id,
        from: from.to_owned(),
        body: body.to_owned(),
        html,
    })
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

fn hash_dir(dir: &Path) -> String {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(std::fs::read(&path).unwrap_or_default());
    }
    hex::encode(&hasher.finalize()[..6])
}
