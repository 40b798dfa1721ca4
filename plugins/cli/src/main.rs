//! `prx-plugin`: the plugin author's tool. `new` scaffolds a plugin that
//! builds and passes its tests, `build` makes its component, `validate`
//! checks it against its manifest and the PRX ABI, `test` runs its tests
//! and then calls it once in a real supervisor, `pack` makes a
//! reproducible `.prxplugin` archive and `install` puts one into a plugins
//! directory (where a running supervisor picks it up).

mod archive;
mod builder;
mod footprint;
mod go_component;
mod golang;
mod inputs;
mod javascript;
#[cfg(test)]
mod javascript_wit;
mod python;
mod scaffold;
mod smoke;
mod templates_go;
mod templates_javascript;
mod templates_python;
mod validate;
mod world;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "prx-plugin",
    version,
    about = "Build, check and ship PRX plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Javascript,
    Typescript,
    /// Standard Go 1.24 or later; tool plugins.
    Go,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new plugin project in ./NAME (or --dir).
    New {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// tool, hook, middleware, cron, provider, storage or module.
        #[arg(long, default_value = "tool")]
        capability: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Rust PDK to depend on (default: the one this prx-plugin was
        /// built from).
        #[arg(long)]
        pdk: Option<PathBuf>,
    },
    /// Build the plugin in this directory (or --dir) into plugin.wasm and
    /// validate it.
    Build {
        #[arg(long)]
        release: bool,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Check a component against its plugin.toml and the PRX ABI.
    Validate {
        /// The component (default: the manifest's [plugin].wasm).
        file: Option<PathBuf>,
        #[arg(long, default_value = "plugin.toml")]
        manifest: PathBuf,
    },
    /// Run the plugin's own tests, then load it into a real supervisor
    /// (ephemeral state) and call each capability once.
    Test {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Arguments for the smoke call of a tool.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Skip the plugin's own tests (cargo test, pytest for Python,
        /// node --test for JavaScript and TypeScript).
        #[arg(long)]
        no_unit: bool,
        /// Run only the plugin's own tests: no build, no supervisor.
        #[arg(long, conflicts_with = "no_unit")]
        no_smoke: bool,
    },
    /// Pack plugin.wasm, plugin.toml, README/LICENSE/CHANGELOG and
    /// checksums.sha256 into a reproducible .prxplugin (tar.gz).
    Pack {
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Verify a .prxplugin and install it into a plugins directory,
    /// atomically (a running supervisor reloads it). When the supervisor
    /// of that directory is running (its --state), it first compiles the
    /// staged version and checks that it starts: a version that does not
    /// is not installed, and one that does takes over in milliseconds.
    Install {
        file: PathBuf,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        /// The running supervisor's state directory (its API socket).
        #[arg(long, default_value = ".prx")]
        state: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New {
            name,
            lang,
            capability,
            dir,
            pdk,
        } => scaffold::new(&name, lang, &capability, dir, pdk),
        Command::Build { release, dir } => builder::build(&dir, release),
        Command::Validate { file, manifest } => validate_cmd(file, &manifest),
        Command::Test {
            dir,
            args,
            no_unit,
            no_smoke,
        } => smoke::test(&dir, &args, !no_unit, !no_smoke),
        Command::Pack { output, dir } => archive::pack(&dir, output),
        Command::Install {
            file,
            plugins,
            state,
        } => archive::install(&file, &plugins, &state),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prx-plugin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate_cmd(file: Option<PathBuf>, manifest: &Path) -> Result<ExitCode> {
    let file = match file {
        Some(file) => file,
        None => wasm_path(manifest)?,
    };
    let wasm = std::fs::read(&file).with_context(|| {
        format!(
            "cannot read {}; build the plugin first (prx-plugin build)",
            file.display()
        )
    })?;
    let report = validate::validate(&wasm, manifest);
    print!("{}", report.render());
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The component a manifest names, next to it.
fn wasm_path(manifest: &Path) -> Result<PathBuf> {
    let parsed =
        prx_supervisor::manifest::Manifest::load(manifest).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    Ok(parsed.wasm_path(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }))
}
