"""Job functions as the training matrix uses them: created, renamed, moved, deactivated and reactivated by training
coordinators, with who holds them (training.models.UserJobFunction). The record itself is organisation structure
(core.org.JobFunction); its pages keep their place under the organisation (/org/job-functions/...)."""
