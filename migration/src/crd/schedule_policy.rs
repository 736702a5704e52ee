//! `SchedulePolicy` (cluster-scoped): when scheduled migrations run. Shaped as Stork's, with
//! the policy at the top level (`policy:`, not `spec:`), so a Stork SchedulePolicy ports by
//! changing its `apiVersion`.

use crate::schedule::policy::{Slot, check_date, parse_day, parse_time};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Runs kept of a policy type when `retain` is not given.
pub const DEFAULT_RETAIN: u32 = 2;

/// The policy types of a SchedulePolicy; any of them may be given.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "SchedulePolicy",
    root = "SchedulePolicyShape",
    status = "SchedulePolicyStatus",
    shortname = "sp",
    doc = "When scheduled migrations run: every N minutes, daily, weekly or monthly",
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.valid"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason")
)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePolicyItem {
    /// Every `intervalMinutes` minutes since the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<IntervalPolicy>,
    /// Every day at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DailyPolicy>,
    /// Every week on `day` at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<WeeklyPolicy>,
    /// Every month on `date` at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<MonthlyPolicy>,
}

/// An interval policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntervalPolicy {
    /// Minutes between runs (at least 1).
    pub interval_minutes: i64,
    /// Runs kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<i64>,
}

/// A daily policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyPolicy {
    /// Time of day in the controller's zone: `10:30PM` or `22:30`.
    pub time: String,
    /// Runs kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<i64>,
}

/// A weekly policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeeklyPolicy {
    /// Day of the week: `Monday` or `Mon`.
    pub day: String,
    /// Time of day in the controller's zone: `10:30PM` or `22:30`.
    pub time: String,
    /// Runs kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<i64>,
}

/// A monthly policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthlyPolicy {
    /// Day of the month, 1 to 31 (a shorter month's last day when past its end).
    pub date: i64,
    /// Time of day in the controller's zone: `10:30PM` or `22:30`.
    pub time: String,
    /// Runs kept (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<i64>,
}

/// What the controller found checking a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePolicyStatus {
    /// `True` when every policy type parses; `False` with the reason otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<String>,
    /// What is wrong, naming the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A SchedulePolicy as the API holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePolicy {
    /// `ferry.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `SchedulePolicy`.
    #[serde(default)]
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The policy types.
    #[serde(default)]
    pub policy: SchedulePolicyItem,
    /// The controller's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SchedulePolicyStatus>,
}

impl kube::Resource for SchedulePolicy {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "SchedulePolicy".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        super::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        super::VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "schedulepolicies".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// One checked policy type: when it fires and how many of its runs are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// When it fires.
    pub slot: Slot,
    /// Runs kept.
    pub retain: u32,
}

fn retain(at: &str, r: Option<i64>) -> Result<u32, String> {
    match r {
        None => Ok(DEFAULT_RETAIN),
        Some(n) if (1..=1000).contains(&n) => Ok(n as u32),
        Some(n) => Err(format!("{at}.retain is {n}: keep between 1 and 1000 runs")),
    }
}

impl SchedulePolicyItem {
    /// Every policy type given, checked; the first problem names its field.
    ///
    /// # Errors
    /// A message naming the field and what to write instead.
    pub fn checked(&self) -> Result<Vec<Checked>, String> {
        let mut out = Vec::new();
        if let Some(p) = &self.interval {
            if !(1..=527_040).contains(&p.interval_minutes) {
                return Err(format!(
                    "policy.interval.intervalMinutes is {}: give 1 to 527040 minutes",
                    p.interval_minutes
                ));
            }
            out.push(Checked {
                slot: Slot::Interval {
                    minutes: p.interval_minutes as u32,
                },
                retain: retain("policy.interval", p.retain)?,
            });
        }
        if let Some(p) = &self.daily {
            let time = parse_time(&p.time).map_err(|e| format!("policy.daily.time: {e}"))?;
            out.push(Checked {
                slot: Slot::Daily { time },
                retain: retain("policy.daily", p.retain)?,
            });
        }
        if let Some(p) = &self.weekly {
            let day = parse_day(&p.day).map_err(|e| format!("policy.weekly.day: {e}"))?;
            let time = parse_time(&p.time).map_err(|e| format!("policy.weekly.time: {e}"))?;
            out.push(Checked {
                slot: Slot::Weekly { day, time },
                retain: retain("policy.weekly", p.retain)?,
            });
        }
        if let Some(p) = &self.monthly {
            let date = check_date(p.date).map_err(|e| format!("policy.monthly.date: {e}"))?;
            let time = parse_time(&p.time).map_err(|e| format!("policy.monthly.time: {e}"))?;
            out.push(Checked {
                slot: Slot::Monthly { date, time },
                retain: retain("policy.monthly", p.retain)?,
            });
        }
        if out.is_empty() {
            return Err(
                "the policy names no type: give policy.interval, policy.daily, policy.weekly or policy.monthly"
                    .into(),
            );
        }
        Ok(out)
    }
}

/// The CRD: the generated one, with the schema's `spec` renamed `policy` (Stork's shape).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = SchedulePolicyShape::crd();
    for v in &mut crd.spec.versions {
        let Some(props) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
        else {
            continue;
        };
        if let Some(spec) = props.remove("spec") {
            props.insert("policy".into(), spec);
        }
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            && let Some(req) = schema.required.as_mut()
        {
            for r in req.iter_mut().filter(|r| r.as_str() == "spec") {
                *r = "policy".into();
            }
        }
    }
    crd
}
