//! The page's files: the Tera templates and the static files. They are built into the
//! binary, so a copied or `cargo install`ed `chatdemo` serves the whole page from any
//! working directory. `server.assets_dir` may name a theme directory to use instead (with
//! `templates/` and `static/` inside); it is checked at start, and a missing or broken one
//! stops the start with a message naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actix_web::http::header::{self, EntityTag};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// The templates the server renders; each must exist and parse.
pub const TEMPLATE_NAMES: [&str; 4] = ["index.html", "message.html", "notice.html", "logout.html"];

/// Built-in templates, by name.
const EMBEDDED_TEMPLATES: [(&str, &str); 4] = [
    ("index.html", include_str!("../templates/index.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("notice.html", include_str!("../templates/notice.html")),
    ("logout.html", include_str!("../templates/logout.html")),
];

/// Built-in static files, by name. A unit test checks that this lists all of `static/`.
const EMBEDDED_STATIC: [(&str, &[u8]); 4] = [
    ("chat.js", include_bytes!("../static/chat.js")),
    ("chat-core.js", include_bytes!("../static/chat-core.js")),
    ("chat.css", include_bytes!("../static/chat.css")),
    ("favicon.svg", include_bytes!("../static/favicon.svg")),
];

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("assets directory {path}: {problem}")]
    Directory { path: String, problem: String },
}

/// Where the page's files come from.
#[derive(Debug, Clone)]
pub enum Assets {
    Embedded,
    /// A theme directory holding `templates/` and `static/`, checked by [`Assets::directory`].
    Directory(PathBuf),
}

impl Assets {
    /// The theme directory `dir`, if it has both subdirectories and every template.
    pub fn directory(dir: &Path) -> Result<Self, AssetError> {
        let problem = |problem: String| AssetError::Directory {
            path: dir.display().to_string(),
            problem,
        };
        if !dir.is_dir() {
            return Err(problem("not found or not a directory".into()));
        }
        for sub in ["templates", "static"] {
            if !dir.join(sub).is_dir() {
                return Err(problem(format!("has no {sub}/ directory")));
            }
        }
        for name in TEMPLATE_NAMES {
            if !dir.join("templates").join(name).is_file() {
                return Err(problem(format!("has no templates/{name}")));
            }
        }
        Ok(Self::Directory(dir.to_path_buf()))
    }

    /// Every template's name and source. A directory's files are read now, once.
    pub fn templates(&self) -> Result<Vec<(String, String)>, AssetError> {
        match self {
            Self::Embedded => Ok(EMBEDDED_TEMPLATES
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
                .collect()),
            Self::Directory(dir) => TEMPLATE_NAMES
                .iter()
                .map(|name| {
                    let path = dir.join("templates").join(name);
                    std::fs::read_to_string(&path)
                        .map(|text| ((*name).to_owned(), text))
                        .map_err(|e| AssetError::Directory {
                            path: path.display().to_string(),
                            problem: e.to_string(),
                        })
                })
                .collect(),
        }
    }

    /// A short hash of every static file, appended to their links as `?v=`, so a browser
    /// may cache them for a day and still sees a change at once.
    pub fn static_version(&self) -> String {
        let mut files: Vec<(String, Vec<u8>)> = match self {
            Self::Embedded => EMBEDDED_STATIC
                .iter()
                .map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec()))
                .collect(),
            Self::Directory(dir) => std::fs::read_dir(dir.join("static"))
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.path().is_file())
                        .map(|e| {
                            let bytes = std::fs::read(e.path()).unwrap_or_default();
                            (e.file_name().to_string_lossy().into_owned(), bytes)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        files.sort();
        let mut hasher = Sha256::new();
        for (name, bytes) in files {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(&bytes);
        }
        hex::encode(&hasher.finalize()[..6])
    }
}

/// The built-in static files, ready to serve: bytes, type and a strong ETag each.
pub struct EmbeddedStatic {
    files: HashMap<&'static str, StaticFile>,
}

struct StaticFile {
    bytes: &'static [u8],
    content_type: &'static str,
    etag: EntityTag,
}

impl EmbeddedStatic {
    pub fn new() -> Self {
        let files = EMBEDDED_STATIC
            .iter()
            .map(|&(name, bytes)| {
                let hash = hex::encode(&Sha256::digest(bytes)[..12]);
                let file = StaticFile {
                    bytes,
                    content_type: content_type(name),
                    etag: EntityTag::new_strong(hash),
                };
                (name, file)
            })
            .collect();
        Self { files }
    }
}

impl Default for EmbeddedStatic {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /static/{name}` from the built-in files: 304 when the browser's copy is current.
pub async fn serve_embedded(
    req: HttpRequest,
    name: web::Path<String>,
    files: web::Data<EmbeddedStatic>,
) -> HttpResponse {
    let Some(file) = files.files.get(name.as_str()) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let current = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .filter_map(|tag| tag.trim().parse::<EntityTag>().ok())
                .any(|tag| tag.weak_eq(&file.etag))
        });
    let mut response = if current {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, file.etag.clone()))
        .content_type(file.content_type);
    if current {
        response.finish()
    } else {
        response.body(file.bytes)
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_dir(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    #[test]
    fn every_file_in_the_source_tree_is_built_in() {
        let mut on_disk: Vec<String> = std::fs::read_dir(source_dir("static"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<&str> = EMBEDDED_STATIC.iter().map(|(n, _)| *n).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        let templates: Vec<&str> = EMBEDDED_TEMPLATES.iter().map(|(n, _)| *n).collect();
        assert_eq!(templates, TEMPLATE_NAMES);
    }

    #[test]
    fn the_source_tree_as_a_theme_has_the_built_in_version() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["templates", "static"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            for entry in std::fs::read_dir(source_dir(sub)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
            }
        }
        let theme = Assets::directory(dir.path()).unwrap();
        assert_eq!(theme.static_version(), Assets::Embedded.static_version());
        assert_eq!(
            theme.templates().unwrap(),
            Assets::Embedded.templates().unwrap()
        );
    }

    #[test]
    fn a_broken_theme_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Assets::directory(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        let err = Assets::directory(dir.path()).unwrap_err().to_string();
        assert!(err.contains("templates/index.html"), "{err}");
    }
}
