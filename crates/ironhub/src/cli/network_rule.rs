//! `ironhub hub network-rule …` and `ironhub dps network-rule …`: the IP filter rules and
//! public network access of the hub or of the DPS instance (ironhub's `/networkRules` and
//! `/dps/networkRules`, with ARM's property names). In Azure these are properties of the ARM
//! resource (`az iot hub update --set properties.ipFilterRules…`); these commands edit them
//! against ironhub. Each change reads the rules, edits them and writes them back on the etag
//! read; the server checks the result (a bad mask, a name used twice, more than 100 rules:
//! 400, nothing changed).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use ironhub_client::{DpsClient, HubClient};
use ironhub_wire::network::{
    IpFilterAction, IpFilterRule, IpFilterTarget, NetworkRules, PublicNetworkAccess,
};
use serde_json::Value;

/// `ironhub {hub|dps} network-rule <command>`
#[derive(Debug, Subcommand)]
pub enum NetworkRuleCommand {
    /// Show the rules and public network access.
    Show,
    /// Add an IP filter rule (last, or at --position).
    Add(AddArgs),
    /// Remove an IP filter rule.
    Remove(NameArg),
    /// Move an IP filter rule to another position (the first matching rule wins).
    Move(MoveArgs),
    /// Enable or disable public network access.
    #[command(name = "public-network-access")]
    PublicNetworkAccess(AccessArgs),
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The rule's name (filterName).
    #[arg(long = "name")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The rule's name (filterName): unique, case-insensitive.
    #[arg(long = "name")]
    pub name: String,
    /// Accept or Reject.
    #[arg(long = "action")]
    pub action: Action,
    /// One address or a CIDR block (IPv4 or IPv6).
    #[arg(long = "ip-mask")]
    pub ip_mask: String,
    /// Where the rule goes, 0 being first [default: last].
    #[arg(long = "position")]
    pub position: Option<usize>,
    /// DPS only: all, serviceApi or deviceApi [default: all].
    #[arg(long = "target")]
    pub target: Option<Target>,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// The new position, 0 being first.
    #[arg(long = "position")]
    pub position: usize,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Enabled or Disabled.
    #[arg(long = "value")]
    pub value: Access,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Action {
    #[value(name = "Accept", alias = "accept")]
    Accept,
    #[value(name = "Reject", alias = "reject")]
    Reject,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Target {
    #[value(name = "all")]
    All,
    #[value(name = "serviceApi", alias = "serviceapi")]
    ServiceApi,
    #[value(name = "deviceApi", alias = "deviceapi")]
    DeviceApi,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Access {
    #[value(name = "Enabled", alias = "enabled")]
    Enabled,
    #[value(name = "Disabled", alias = "disabled")]
    Disabled,
}

/// Whose rules a command edits.
pub enum Rules<'a> {
    Hub(&'a HubClient),
    Dps(&'a DpsClient),
}

impl Rules<'_> {
    async fn get(&self) -> anyhow::Result<(NetworkRules, Option<String>)> {
        Ok(match self {
            Rules::Hub(c) => c.get_network_rules().await?,
            Rules::Dps(c) => c.get_network_rules().await?,
        })
    }

    async fn put(&self, rules: &NetworkRules, etag: Option<&str>) -> anyhow::Result<NetworkRules> {
        let etag = Some(etag.unwrap_or("*"));
        Ok(match self {
            Rules::Hub(c) => c.put_network_rules(rules, etag).await?,
            Rules::Dps(c) => c.put_network_rules(rules, etag).await?,
        })
    }
}

fn position_of(rules: &NetworkRules, name: &str) -> anyhow::Result<usize> {
    rules
        .ip_filter_rules
        .iter()
        .position(|r| r.filter_name.eq_ignore_ascii_case(name))
        .with_context(|| format!("there is no IP filter rule named '{name}'"))
}

/// Applies a command to `rules` (what the server is then sent).
fn edit(rules: &mut NetworkRules, command: &NetworkRuleCommand, dps: bool) -> anyhow::Result<()> {
    match command {
        NetworkRuleCommand::Show => {}
        NetworkRuleCommand::Add(a) => {
            if a.target.is_some() && !dps {
                bail!("--target is DPS's: a hub's rules apply to all its endpoints");
            }
            let rule = IpFilterRule {
                filter_name: a.name.clone(),
                action: match a.action {
                    Action::Accept => IpFilterAction::Accept,
                    Action::Reject => IpFilterAction::Reject,
                },
                ip_mask: a.ip_mask.clone(),
                target: a.target.map(|t| match t {
                    Target::All => IpFilterTarget::All,
                    Target::ServiceApi => IpFilterTarget::ServiceApi,
                    Target::DeviceApi => IpFilterTarget::DeviceApi,
                }),
            };
            let at = a
                .position
                .unwrap_or(rules.ip_filter_rules.len())
                .min(rules.ip_filter_rules.len());
            rules.ip_filter_rules.insert(at, rule);
        }
        NetworkRuleCommand::Remove(n) => {
            let at = position_of(rules, &n.name)?;
            rules.ip_filter_rules.remove(at);
        }
        NetworkRuleCommand::Move(m) => {
            let at = position_of(rules, &m.name.name)?;
            let rule = rules.ip_filter_rules.remove(at);
            let to = m.position.min(rules.ip_filter_rules.len());
            rules.ip_filter_rules.insert(to, rule);
        }
        NetworkRuleCommand::PublicNetworkAccess(a) => {
            rules.public_network_access = match a.value {
                Access::Enabled => PublicNetworkAccess::Enabled,
                Access::Disabled => PublicNetworkAccess::Disabled,
            };
        }
    }
    Ok(())
}

/// Runs a `network-rule` command and returns the rules as they are after it.
pub async fn run(target: Rules<'_>, command: &NetworkRuleCommand) -> anyhow::Result<Value> {
    let (mut rules, etag) = target.get().await?;
    if !matches!(command, NetworkRuleCommand::Show) {
        edit(&mut rules, command, matches!(target, Rules::Dps(_)))?;
        rules = target.put(&rules, etag.as_deref()).await?;
    }
    Ok(serde_json::to_value(rules)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_move_and_remove_keep_the_order_asked() {
        let mut rules = NetworkRules::default();
        let add = |name: &str, position| {
            NetworkRuleCommand::Add(AddArgs {
                name: name.into(),
                action: Action::Reject,
                ip_mask: "10.0.0.1".into(),
                position,
                target: None,
            })
        };
        edit(&mut rules, &add("b", None), false).unwrap();
        edit(&mut rules, &add("a", Some(0)), false).unwrap();
        edit(&mut rules, &add("c", Some(99)), false).unwrap();
        let names = |r: &NetworkRules| {
            r.ip_filter_rules
                .iter()
                .map(|r| r.filter_name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&rules), ["a", "b", "c"]);
        let to_front = NetworkRuleCommand::Move(MoveArgs {
            name: NameArg { name: "C".into() },
            position: 0,
        });
        edit(&mut rules, &to_front, false).unwrap();
        assert_eq!(names(&rules), ["c", "a", "b"]);
        let remove = NetworkRuleCommand::Remove(NameArg { name: "a".into() });
        edit(&mut rules, &remove, false).unwrap();
        assert_eq!(names(&rules), ["c", "b"]);
        assert!(edit(&mut rules, &remove, false).is_err());
        let mut dps_only = add("d", None);
        if let NetworkRuleCommand::Add(a) = &mut dps_only {
            a.target = Some(Target::DeviceApi);
        }
        assert!(edit(&mut rules, &dps_only, false).is_err());
        edit(&mut rules, &dps_only, true).unwrap();
    }
}
