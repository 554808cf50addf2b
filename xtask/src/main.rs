//! `cargo xtask bundle continuo [--release]` (nice-plug-xtask) and `cargo xtask install`,
//! which copies the bundles where hosts look for them.

use std::path::{Path, PathBuf};

fn main() -> nice_plug_xtask::Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("install") {
        return install();
    }
    nice_plug_xtask::main()
}

/// Per-user plugin folders: (CLAP, VST3).
fn plugin_dirs() -> (PathBuf, PathBuf) {
    let home = PathBuf::from(
        std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .unwrap_or_default(),
    );
    if cfg!(target_os = "macos") {
        let base = home.join("Library/Audio/Plug-Ins");
        (base.join("CLAP"), base.join("VST3"))
    } else if cfg!(windows) {
        let common = PathBuf::from(
            std::env::var_os("COMMONPROGRAMFILES")
                .unwrap_or_else(|| "C:\\Program Files\\Common Files".into()),
        );
        (common.join("CLAP"), common.join("VST3"))
    } else {
        (home.join(".clap"), home.join(".vst3"))
    }
}

fn copy_recursive(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_recursive(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

fn install() -> nice_plug_xtask::Result<()> {
    nice_plug_xtask::chdir_workspace_root()?;
    let bundled = Path::new("target/bundled");
    let (clap_dir, vst3_dir) = plugin_dirs();
    for (name, dir) in [("Continuo.clap", clap_dir), ("Continuo.vst3", vst3_dir)] {
        let from = bundled.join(name);
        if !from.exists() {
            anyhow::bail!(
                "{} not found: run `cargo xtask bundle continuo --release` first",
                from.display()
            );
        }
        std::fs::create_dir_all(&dir)?;
        let to = dir.join(name);
        if to.is_dir() {
            std::fs::remove_dir_all(&to)?;
        }
        copy_recursive(&from, &to)?;
        println!("installed {}", to.display());
    }
    Ok(())
}
