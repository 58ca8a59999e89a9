variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. \"liveops-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name_prefix))
    error_message = "name_prefix must be 3-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "location" {
  type        = string
  description = "Azure region of the monitoring resources."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the monitoring resources."
}

variable "log_retention_days" {
  type        = number
  description = "Days the Log Analytics workspace keeps container logs and diagnostics."
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "grafana_enabled" {
  type        = bool
  description = "Create an Azure Managed Grafana wired to the Azure Monitor workspace (managed Prometheus)."
  default     = true
}

variable "grafana_admin_object_ids" {
  type        = list(string)
  description = "Entra ID object IDs (users or groups) given the Grafana Admin role on the managed Grafana."
  default     = []
}

variable "zone_redundant" {
  type        = bool
  description = "Make the managed Grafana zone-redundant (prod)."
  default     = false
}

variable "aks_cluster_id" {
  type        = string
  description = "ID of the AKS cluster whose Prometheus metrics and container logs the data collection rules collect."
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
