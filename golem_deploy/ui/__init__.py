"""Rich renderables drawn from snapshot data only (see golem_deploy.ui.table)."""
