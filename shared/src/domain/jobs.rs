//! The job-type catalogue and the job states of the data platform.

use serde::{Deserialize, Serialize};

/// The group a job type belongs to in the platform's catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobCategory {
    /// Views, forecasts and cost calculations.
    DataProcessing,
    /// Sampling, statistics, deletion, mapping and delivery of datasets.
    DatasetManagement,
    /// Training and deploying models.
    ModelAndAi,
}

/// One entry of the job-type catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobType {
    /// Identifier used in job items and subscription filters.
    pub name: &'static str,
    /// Catalogue group.
    pub category: JobCategory,
    /// What the job does.
    pub description: &'static str,
    /// Why a customer would subscribe to it.
    pub common_use_case: &'static str,
}

const fn job(
    name: &'static str,
    category: JobCategory,
    description: &'static str,
    common_use_case: &'static str,
) -> JobType {
    JobType {
        name,
        category,
        description,
        common_use_case,
    }
}

use JobCategory::{DataProcessing, DatasetManagement, ModelAndAi};

/// Every job type a subscription can filter on, in catalogue order.
pub const JOB_TYPES: &[JobType] = &[
    job(
        "materialize-view",
        DataProcessing,
        "Materialized view creation and refresh jobs triggered by dataset creation, updates, or scheduled refreshes",
        "Monitor when your datasets are updated and ready for use",
    ),
    job(
        "forecast",
        DataProcessing,
        "Legacy forecast jobs that approximate row counts for query definitions",
        "Running legacy forecasts to estimate row counts",
    ),
    job(
        "nql-forecast",
        DataProcessing,
        "NQL-based forecast jobs that estimate rows matching NQL query definitions",
        "Monitor NQL query planning and estimation jobs",
    ),
    job(
        "costs",
        DataProcessing,
        "Cost calculation jobs triggered by data processing estimation requests",
        "Track completion of cost calculations for budgeting",
    ),
    job(
        "datasets_sample",
        DatasetManagement,
        "Dataset sampling jobs triggered when requesting preview samples of datasets",
        "Monitor when dataset samples are ready for review",
    ),
    job(
        "datasets_calculate_column_stats",
        DatasetManagement,
        "Column statistics calculation jobs triggered by data profiling requests",
        "Track completion of data analysis",
    ),
    job(
        "datasets_delete_table",
        DatasetManagement,
        "Dataset table deletion jobs triggered when cleaning up data resources",
        "Confirm successful cleanup of data resources",
    ),
    job(
        "datasets_suggest_mappings",
        DatasetManagement,
        "Mapping suggestion jobs triggered by automated data integration processes",
        "Monitor completion of data mapping recommendations",
    ),
    job(
        "datasets_deliver_data",
        DatasetManagement,
        "Data delivery jobs triggered when connectors deliver data to external endpoints",
        "Track when your data has been successfully delivered to external platforms",
    ),
    job(
        "delete-snowflake-table",
        DatasetManagement,
        "Snowflake table deletion jobs triggered when cleaning up Snowflake resources",
        "Confirm successful deletion of Snowflake tables",
    ),
    job(
        "upload-stats",
        DatasetManagement,
        "Statistics upload jobs triggered when synchronizing statistical data and metrics",
        "Monitor completion of statistics synchronization",
    ),
    job(
        "model_training_run",
        ModelAndAi,
        "LLM model training jobs triggered when starting fine-tuned training processes",
        "Monitor long-running ML model training jobs",
    ),
    job(
        "models_deliver_model",
        ModelAndAi,
        "Model delivery jobs triggered when deploying trained models to production data planes",
        "Track model deployment completion",
    ),
];

/// The catalogue entry named `name`, if it exists.
pub fn job_type(name: &str) -> Option<&'static JobType> {
    JOB_TYPES.iter().find(|t| t.name == name)
}

/// Comma-separated catalogue names, for error messages.
pub fn job_type_names() -> String {
    JOB_TYPES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The state of a job. Jobs move `pending -> running -> completed`, or to
/// `failed`, or through `pending_cancellation` to `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Queued but not yet started.
    Pending,
    /// Currently executing.
    Running,
    /// Finished successfully.
    Completed,
    /// Being cancelled.
    PendingCancellation,
    /// Cancelled before completion.
    Cancelled,
    /// Encountered an error and could not complete.
    Failed,
}

impl JobState {
    /// All six states, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Completed,
        JobState::PendingCancellation,
        JobState::Cancelled,
        JobState::Failed,
    ];

    /// The wire name, e.g. `pending_cancellation`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::PendingCancellation => "pending_cancellation",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    /// What the state means, for the catalogue endpoint.
    pub const fn description(self) -> &'static str {
        match self {
            JobState::Pending => "Job has been queued but not yet started",
            JobState::Running => "Job is currently executing",
            JobState::Completed => "Job has finished successfully",
            JobState::PendingCancellation => "Job is being cancelled",
            JobState::Cancelled => "Job was cancelled before completion",
            JobState::Failed => "Job encountered an error and could not complete",
        }
    }

    /// The state with wire name `name`, if any.
    pub fn parse(name: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Comma-separated wire names, for error messages.
    pub fn names() -> String {
        Self::ALL.map(JobState::as_str).join(", ")
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_lists_every_type_of_the_platform_once() {
        assert_eq!(JOB_TYPES.len(), 13);
        let mut names: Vec<_> = JOB_TYPES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), JOB_TYPES.len(), "duplicate job type");
        assert_eq!(
            job_type("datasets_deliver_data").map(|t| t.category),
            Some(JobCategory::DatasetManagement)
        );
        assert_eq!(
            job_type("model_training_run").map(|t| t.category),
            Some(JobCategory::ModelAndAi)
        );
        assert!(job_type("materialize_view").is_none());
    }

    #[test]
    fn states_round_trip_through_their_wire_names() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(JobState::parse("done"), None);
        assert_eq!(
            JobState::names(),
            "pending, running, completed, pending_cancellation, cancelled, failed"
        );
    }
}
