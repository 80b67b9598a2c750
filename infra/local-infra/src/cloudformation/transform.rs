//! The SAM transform of the template, by AWS's own translator.
//!
//! CloudFormation runs the `AWS::Serverless-2016-10-31` transform in AWS;
//! moto's CloudFormation does not, so the local stack runs the same code,
//! `samtranslator` (installed in `.venv/` with the SAM CLI), through
//! `infra/sam-transform.py`. It is the one step left in Python because
//! `samtranslator` is the transform's reference implementation: a Rust
//! re-implementation would be another imitation of CloudFormation, which
//! is what deploying the stack replaces. The output is cached under
//! `target/local-stack/`, keyed by the template, the script and the pinned
//! tool versions, so tests and restarts transform once.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::repository_root;

/// The template could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The translator could not be started.
    #[error(
        "cannot run {python} (LOCAL_PYTHON, default .venv/bin/python; run `make tools`): {source}"
    )]
    Start {
        /// The interpreter.
        python: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The translator refused the template.
    #[error("the SAM transform of {template} failed: {message}")]
    Failed {
        /// The template.
        template: String,
        /// The translator's error output.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TransformError + '_ {
    move |source| TransformError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The transformed template (CloudFormation JSON) of the SAM template at
/// `template`, with every function's code replaced by an inline placeholder.
pub async fn transform(template: &Path, region: &str) -> Result<String, TransformError> {
    let root = repository_root();
    let script = root.join("infra/sam-transform.py");
    let mut hasher = Sha256::new();
    for input in [template, &script, &root.join("infra/requirements.txt")] {
        hasher.update(std::fs::read(input).map_err(io(input))?);
        hasher.update([0]);
    }
    hasher.update(region.as_bytes());
    let digest = hasher.finalize();
    let key: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let cache_dir = root.join("target/local-stack");
    let cached = cache_dir.join(format!("transformed-{key}.json"));
    if let Ok(body) = std::fs::read_to_string(&cached) {
        return Ok(body);
    }
    let python: PathBuf =
        std::env::var_os("LOCAL_PYTHON").map_or_else(|| root.join(".venv/bin/python"), Into::into);
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(template)
        .env("AWS_REGION", region)
        .env("AWS_DEFAULT_REGION", region)
        .output()
        .await
        .map_err(|source| TransformError::Start {
            python: python.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The translator's last line names the problem; the rest is a trace.
        let message = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output")
            .to_owned();
        return Err(TransformError::Failed {
            template: template.display().to_string(),
            message,
        });
    }
    let body = String::from_utf8_lossy(&output.stdout).into_owned();
    // Written whole under a unique name, then renamed: parallel test
    // binaries may transform at once.
    std::fs::create_dir_all(&cache_dir).map_err(io(&cache_dir))?;
    let partial = cache_dir.join(format!("{key}.{}.partial", uuid::Uuid::new_v4().simple()));
    std::fs::write(&partial, &body).map_err(io(&partial))?;
    std::fs::rename(&partial, &cached).map_err(io(&cached))?;
    Ok(body)
}
