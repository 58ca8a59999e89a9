//! The module table: every service of the binary, one row each, and the named groups of them
//! `--target` can pick (Grafana Loki's module manager, in small). Adding a service is one crate
//! and one line in [`Table::standard`].

use liveops_module::{ConfigError, Group, Module};

/// The port of `all`, every module in one process.
const ALL_PORT: u16 = 8080;

/// Named groups of modules, with the port they listen on together.
const GROUPS: &[(&str, &[&str], u16)] = &[
    ("ingest", &["gateway", "fairness"], 8080),
    ("game", &["progression", "leaderboard"], 8083),
];

/// The modules this binary knows.
#[derive(Clone)]
pub struct Table {
    modules: Vec<&'static dyn Module>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.modules.iter().map(|m| m.name()))
            .finish()
    }
}

impl Table {
    /// Every service of LiveOps.
    pub fn standard() -> Self {
        Self {
            modules: vec![
                &liveops_gateway::MODULE,
                &liveops_fairness::MODULE,
                &liveops_leaderboard::MODULE,
                &liveops_progression::MODULE,
                &liveops_operators::MODULE,
                &liveops_campaigns::MODULE,
                &liveops_participation::MODULE,
                &liveops_distribution::MODULE,
            ],
        }
    }

    /// This table plus `module` (part of `all`, and a target of its own).
    pub fn with(mut self, module: &'static dyn Module) -> Self {
        self.modules.push(module);
        self
    }

    /// Every module, in table order.
    pub fn modules(&self) -> &[&'static dyn Module] {
        &self.modules
    }

    /// Adds every module's settings to `cmd`.
    pub fn args(&self, cmd: clap::Command) -> clap::Command {
        // A module's settings struct brings its doc comment as the command's about; keep the
        // subcommand's own.
        let (about, long) = (cmd.get_about().cloned(), cmd.get_long_about().cloned());
        let mut cmd = self.modules.iter().fold(cmd, |cmd, m| m.args(cmd));
        if let Some(about) = about {
            cmd = cmd.about(about);
        }
        if let Some(long) = long {
            cmd = cmd.long_about(long);
        }
        self.describe_targets(cmd)
    }

    /// `--target`'s and `--port`'s help, written from this table so a new module or group is
    /// listed there with its port (commands without them are left as they are).
    fn describe_targets(&self, cmd: clap::Command) -> clap::Command {
        let has = |id: &str| cmd.get_arguments().any(|a| a.get_id() == id);
        let (target, port) = (has("target"), has("port"));
        let modules: Vec<&str> = self.modules.iter().map(|m| m.name()).collect();
        let groups: Vec<String> = GROUPS
            .iter()
            .map(|(g, members, _)| format!("{g} = {}", members.join("+")))
            .collect();
        let ports: Vec<String> = std::iter::once(("all", ALL_PORT))
            .chain(GROUPS.iter().map(|(g, _, p)| (*g, *p)))
            .chain(self.modules.iter().map(|m| (m.name(), m.port())))
            .map(|(name, p)| format!("{name} {p}"))
            .collect();
        let mut cmd = cmd;
        if target {
            cmd = cmd.mut_arg("target", |a| {
                a.help(format!(
                    "Services to run: all, a module ({}), a group ({}), or several, comma separated",
                    modules.join(", "),
                    groups.join(", ")
                ))
            });
        }
        if port {
            cmd = cmd.mut_arg("port", |a| {
                a.help(format!(
                    "Listen port (default by target, the first one's if several: {})",
                    ports.join(", ")
                ))
            });
        }
        cmd
    }

    /// Checks every module's settings, whatever the target, so a bad value always stops
    /// start-up.
    pub fn check(&self, args: &clap::ArgMatches) -> Result<(), ConfigError> {
        self.modules.iter().try_for_each(|m| m.check(args))
    }

    /// Every consumer group of every module: each process creates them all at start.
    pub fn groups(&self) -> Vec<Group> {
        self.modules
            .iter()
            .flat_map(|m| m.groups().iter().copied())
            .collect()
    }

    /// The OpenAPI document of every module (what `/openapi.json` serves in every process, so
    /// one spec describes the product whichever target answers).
    pub fn openapi(
        &self,
        mut doc: utoipa::openapi::OpenApi,
        args: &clap::ArgMatches,
    ) -> utoipa::openapi::OpenApi {
        for m in &self.modules {
            doc.merge(m.openapi(args));
        }
        doc
    }

    /// The modules `spec` names: `all`, a group, a module, or several of these comma separated.
    pub fn target(&self, spec: &str) -> Result<Target, ConfigError> {
        let mut names: Vec<&str> = Vec::new();
        let mut port = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (members, p): (Vec<&str>, u16) = if part == "all" {
                (self.modules.iter().map(|m| m.name()).collect(), ALL_PORT)
            } else if let Some((_, members, p)) = GROUPS.iter().find(|(g, _, _)| *g == part) {
                (members.to_vec(), *p)
            } else if let Some(m) = self.modules.iter().find(|m| m.name() == part) {
                (vec![m.name()], m.port())
            } else {
                return Err(ConfigError::new(
                    "LIVEOPS_TARGET",
                    format!("unknown target {part:?}: use all, {}", self.known()),
                ));
            };
            port.get_or_insert(p);
            for name in members {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let modules: Vec<&'static dyn Module> = self
            .modules
            .iter()
            .copied()
            .filter(|m| names.contains(&m.name()))
            .collect();
        if modules.is_empty() {
            return Err(ConfigError::new("LIVEOPS_TARGET", "no module to run"));
        }
        let name = if spec.trim().is_empty() {
            "all".into()
        } else {
            spec.trim().to_owned()
        };
        Ok(Target {
            name,
            modules,
            port: port.unwrap_or(ALL_PORT),
        })
    }

    fn known(&self) -> String {
        GROUPS
            .iter()
            .map(|(g, _, _)| *g)
            .chain(self.modules.iter().map(|m| m.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The modules one process runs.
#[derive(Clone)]
pub struct Target {
    /// As given (`all`, `gateway`, `ingest,game`).
    pub name: String,
    /// The modules, in table order.
    pub modules: Vec<&'static dyn Module>,
    /// The port they listen on unless `PORT` says otherwise.
    pub port: u16,
}

impl Target {
    /// Whether this process runs the module called `name`.
    pub fn runs(&self, name: &str) -> bool {
        self.modules.iter().any(|m| m.name() == name)
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field(
                "modules",
                &self.modules.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .field("port", &self.port)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &Target) -> Vec<&str> {
        t.modules.iter().map(|m| m.name()).collect()
    }

    #[test]
    fn targets_are_modules_groups_or_lists_of_them() {
        let table = Table::standard();
        let all = table.target("all").unwrap();
        assert_eq!(all.modules.len(), Table::standard().modules().len());
        assert_eq!(all.port, 8080);
        let lb = table.target("leaderboard").unwrap();
        assert_eq!((names(&lb), lb.port), (vec!["leaderboard"], 8082));
        let ingest = table.target("ingest").unwrap();
        assert_eq!(names(&ingest), vec!["gateway", "fairness"]);
        let both = table.target("gateway, progression").unwrap();
        assert_eq!(
            (names(&both), both.port),
            (vec!["gateway", "progression"], 8080)
        );
        let err = table.target("warehouse").unwrap_err();
        assert_eq!(err.var, "LIVEOPS_TARGET");
        assert!(err.reason.contains("ingest"), "{err}");
    }

    #[test]
    fn the_target_and_port_help_lists_every_module_and_group_of_the_table() {
        let table = Table::standard();
        let cmd = table.args(<crate::config::RawConfig as clap::Args>::augment_args(
            clap::Command::new("serve"),
        ));
        let help = |id: &str| {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_help().unwrap().to_string()
        };
        let (target, port) = (help("target"), help("port"));
        for m in table.modules() {
            assert!(target.contains(m.name()), "{target}");
            assert!(
                port.contains(&format!("{} {}", m.name(), m.port())),
                "{port}"
            );
        }
        assert!(
            target.contains("game = progression+leaderboard"),
            "{target}"
        );
        assert!(
            port.contains("all 8080") && port.contains("game 8083"),
            "{port}"
        );
        // A command without the shared settings is left alone.
        let bare = table.args(clap::Command::new("bare"));
        assert!(bare.get_arguments().all(|a| a.get_id() != "target"));
    }
}
