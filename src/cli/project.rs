//! The project file, `callflow.toml`: where a project keeps its flows,
//! scripts, scenarios and traces, and how its server listens. Found by
//! walking up from the current directory (as Cargo finds `Cargo.toml`);
//! its relative paths start from its own folder. Flags given on the command
//! line win over it; without one, the commands' own defaults apply.
//!
//! ```toml
//! flows = "flows"
//! scripts = ["scripts"]
//! tests = ["tests"]
//! traces = "traces"
//!
//! [check]
//! types = true          # check and test type-check --!strict scripts
//!
//! [serve]
//! listen = "127.0.0.1:8000"
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use callflow::media::PortRange;
use callflow::sim::scenario::resolve;
use callflow::sip::Trunk;

/// The project file's name.
pub const FILE_NAME: &str = "callflow.toml";

/// Larger than any project file a person writes.
const MAX_BYTES: u64 = 1 << 20;

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    flows: Option<PathBuf>,
    scripts: Option<Vec<PathBuf>>,
    tests: Option<Vec<PathBuf>>,
    traces: Option<PathBuf>,
    check: Option<RawCheck>,
    serve: Option<RawServe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    types: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    operator_key_file: Option<PathBuf>,
    sip: Option<SocketAddr>,
    public_addr: Option<IpAddr>,
    rtp_ports: Option<String>,
    trunks: Option<Vec<String>>,
    prompts: Option<Vec<PathBuf>>,
}

/// A project file read and resolved: paths are relative to the current
/// directory (`../flows` from a subdirectory); absolute ones stay so.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Project {
    /// The project file itself (absolute).
    pub file: PathBuf,
    pub flows: Option<PathBuf>,
    /// Script directories (empty: none named).
    pub scripts: Vec<PathBuf>,
    /// Scenario files or directories (empty: none named).
    pub tests: Vec<PathBuf>,
    pub traces: Option<PathBuf>,
    /// `[check] types`: `check` and `test` type-check strict scripts.
    pub types: bool,
    pub serve: Serve,
}

/// The `[serve]` table: what `callflow serve` (and `dev`) would take as flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Serve {
    pub listen: Option<String>,
    pub operator_key_file: Option<PathBuf>,
    pub sip: Option<SocketAddr>,
    pub public_addr: Option<IpAddr>,
    pub rtp_ports: Option<PortRange>,
    pub trunks: Vec<Trunk>,
    pub prompts: Vec<PathBuf>,
}

/// The project file in `start` or the nearest folder above it.
pub fn find(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|file| file.is_file())
}

/// Finds and reads the project file above the current directory, if any.
pub fn discover() -> anyhow::Result<Option<Project>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    match find(&cwd) {
        Some(file) => load(&file, &cwd).map(Some),
        None => Ok(None),
    }
}

/// Reads a project file; `cwd` is where relative results are relative to.
pub fn load(file: &Path, cwd: &Path) -> anyhow::Result<Project> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read the project file {}", file.display()))?;
    if text.len() as u64 > MAX_BYTES {
        bail!(
            "the project file {} is larger than {} KiB",
            file.display(),
            MAX_BYTES >> 10
        );
    }
    parse(&text, file, cwd)
}

/// Parses a project file's text; errors name the file, and the line and
/// column or the key.
pub fn parse(text: &str, file: &Path, cwd: &Path) -> anyhow::Result<Project> {
    let raw: Raw = toml::from_str(text)
        .map_err(|err| anyhow::anyhow!("{}", err.to_string().trim_end()))
        .with_context(|| format!("bad project file {}", file.display()))?;
    let file = resolve(cwd, file);
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let place = |path: &Path| -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let absolute = resolve(&base, path);
        match pathdiff::diff_paths(&absolute, cwd) {
            Some(rest) if rest.as_os_str().is_empty() => PathBuf::from("."),
            Some(rest) => rest,
            None => absolute,
        }
    };
    let places = |paths: Option<Vec<PathBuf>>| -> Vec<PathBuf> {
        paths.unwrap_or_default().iter().map(|p| place(p)).collect()
    };
    let serve = raw.serve.unwrap_or_default();
    let rtp_ports = serve
        .rtp_ports
        .map(|text| text.parse::<PortRange>())
        .transpose()
        .map_err(|err| {
            anyhow::anyhow!(
                "bad project file {}: serve.rtp_ports: {err}",
                file.display()
            )
        })?;
    let trunks = serve
        .trunks
        .unwrap_or_default()
        .iter()
        .map(|text| text.parse::<Trunk>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            anyhow::anyhow!("bad project file {}: serve.trunks: {err}", file.display())
        })?;
    Ok(Project {
        flows: raw.flows.as_deref().map(place),
        scripts: places(raw.scripts),
        tests: places(raw.tests),
        traces: raw.traces.as_deref().map(place),
        types: raw.check.and_then(|check| check.types).unwrap_or(false),
        serve: Serve {
            listen: serve.listen,
            operator_key_file: serve.operator_key_file.as_deref().map(place),
            sip: serve.sip,
            public_addr: serve.public_addr,
            rtp_ports,
            trunks,
            prompts: places(serve.prompts),
        },
        file,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parsed(text: &str) -> anyhow::Result<Project> {
        parse(text, Path::new("/p/callflow.toml"), Path::new("/p"))
    }

    #[test]
    fn an_empty_file_names_nothing() {
        let project = parsed("").unwrap();
        assert_eq!(
            project,
            Project {
                file: PathBuf::from("/p/callflow.toml"),
                ..Project::default()
            }
        );
    }

    #[test]
    fn every_key_is_read_and_paths_start_from_the_file() {
        let project = parsed(
            r#"
flows = "flows"
scripts = ["scripts", "../shared/scripts"]
tests = ["tests/scenarios"]
traces = "/var/log/callflow"

[check]
types = true

[serve]
listen = "0.0.0.0:8080"
operator_key_file = "secrets/operator.key"
sip = "127.0.0.1:5060"
public_addr = "192.0.2.10"
rtp_ports = "20000-20100"
trunks = ["192.0.2.1", "192.0.2.2:5060"]
prompts = ["prompts"]
"#,
        )
        .unwrap();
        assert_eq!(project.flows, Some(PathBuf::from("flows")));
        assert_eq!(
            project.scripts,
            [PathBuf::from("scripts"), PathBuf::from("../shared/scripts")]
        );
        assert_eq!(project.tests, [PathBuf::from("tests/scenarios")]);
        assert_eq!(project.traces, Some(PathBuf::from("/var/log/callflow")));
        assert!(project.types);
        let serve = &project.serve;
        assert_eq!(serve.listen.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(
            serve.operator_key_file,
            Some(PathBuf::from("secrets/operator.key"))
        );
        assert_eq!(serve.sip, Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(serve.public_addr, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(serve.rtp_ports, Some("20000-20100".parse().unwrap()));
        assert_eq!(serve.trunks.len(), 2);
        assert_eq!(serve.prompts, [PathBuf::from("prompts")]);
    }

    #[test]
    fn from_a_subdirectory_paths_lead_up() {
        let project = parse(
            "flows = \"flows\"\nscripts = [\".\"]",
            Path::new("/p/callflow.toml"),
            Path::new("/p/tests/deep"),
        )
        .unwrap();
        assert_eq!(project.flows, Some(PathBuf::from("../../flows")));
        assert_eq!(project.scripts, [PathBuf::from("../..")]);
        // And from the project's own folder, "." stays ".".
        let project = parsed("scripts = [\".\"]").unwrap();
        assert_eq!(project.scripts, [PathBuf::from(".")]);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it_and_the_file() {
        for (text, key) in [
            ("flow = \"flows\"", "flow"),
            ("[serve]\nlisten_on = \"x\"", "listen_on"),
            ("[server]\nlisten = \"x\"", "server"),
        ] {
            let err = format!("{:#}", parsed(text).unwrap_err());
            assert!(err.contains("/p/callflow.toml"), "{err}");
            assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
        }
    }

    #[test]
    fn bad_toml_names_the_line_and_column() {
        let err = format!(
            "{:#}",
            parsed("flows = \"flows\"\nscripts = [\"scripts\"\n").unwrap_err()
        );
        assert!(
            err.starts_with("bad project file /p/callflow.toml"),
            "{err}"
        );
        assert!(err.contains("line 2, column"), "{err}");
        let err = format!("{:#}", parsed("flows = 3").unwrap_err());
        assert!(err.contains("line 1, column 9"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = format!("{:#}", parsed("[serve]\nrtp_ports = \"9-10\"").unwrap_err());
        assert!(err.contains("serve.rtp_ports"), "{err}");
        let err = format!(
            "{:#}",
            parsed("[serve]\ntrunks = [\"nowhere\"]").unwrap_err()
        );
        assert!(err.contains("serve.trunks"), "{err}");
        let err = format!("{:#}", parsed("[serve]\nsip = \"5060\"").unwrap_err());
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_nearest_file_up_the_tree_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find(&deep), None);
        std::fs::write(tmp.path().join(FILE_NAME), "").unwrap();
        assert_eq!(find(&deep), Some(tmp.path().join(FILE_NAME)));
        std::fs::write(tmp.path().join("a/b").join(FILE_NAME), "").unwrap();
        assert_eq!(find(&deep), Some(tmp.path().join("a/b").join(FILE_NAME)));
        // A folder of that name is not a project file.
        std::fs::create_dir(deep.join(FILE_NAME)).unwrap();
        assert_eq!(find(&deep), Some(tmp.path().join("a/b").join(FILE_NAME)));
    }
}
