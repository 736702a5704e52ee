//! When scheduled migrations are due: the pure rules of a SchedulePolicy (parsing its times,
//! the next due time of each policy type, daylight-saving changes, month ends). The
//! reconcilers that use them are `source::migration_schedule` and `source::schedule_policy`.

pub mod policy;
