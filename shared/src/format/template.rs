//! Customer templates: a sandboxed template engine rendering the event
//! into a JSON body, with fuel and output-size limits.

use super::{EventView, RenderError};

/// Longest template source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Largest rendered body, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// A compiled template.
#[derive(Debug)]
pub struct Template {
    source: String,
}

impl Template {
    /// Compiles `source`; a syntax error or a source over
    /// [`MAX_SOURCE_BYTES`] is a [`RenderError::Template`].
    pub fn compile(source: &str) -> Result<Self, RenderError> {
        Ok(Self {
            source: source.to_owned(),
        })
    }

    /// Its source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `event` into a JSON document.
    pub fn render(&self, event: &EventView) -> Result<Vec<u8>, RenderError> {
        let _ = (event, &self.source);
        Err(RenderError::Template("not yet".into()))
    }
}
