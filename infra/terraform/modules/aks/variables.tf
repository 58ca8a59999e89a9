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
  description = "Azure region of the cluster."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the cluster."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the control plane and node pools, e.g. \"1.32\"."

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as 1.32."
  }
}

variable "sku_tier" {
  type        = string
  description = "Control plane tier: Standard (uptime SLA) in prod, Free in dev."
  default     = "Standard"

  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.sku_tier)
    error_message = "sku_tier must be Free, Standard or Premium."
  }
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the node pools (Azure CNI gives pods addresses from it)."
}

variable "zones" {
  type        = list(string)
  description = "Availability zones the node pools are spread across."
  default     = ["1", "2", "3"]
}

variable "system_pool" {
  type = object({
    vm_size    = string
    node_count = number
  })
  description = "System node pool (critical add-ons only): VM size and fixed node count (one per zone in prod)."
}

variable "app_pool" {
  type = object({
    vm_size   = string
    min_count = number
    max_count = number
  })
  description = "Application node pool for the LiveOps services: VM size and autoscaler bounds."

  validation {
    condition     = var.app_pool.min_count >= 1 && var.app_pool.max_count >= var.app_pool.min_count && var.app_pool.max_count <= 100
    error_message = "app_pool needs 1 <= min_count <= max_count <= 100."
  }
}

variable "app_pool_max_pods" {
  type        = number
  description = "Pods per node of the application pool (Azure CNI reserves an address for each)."
  default     = 110

  validation {
    condition     = var.app_pool_max_pods >= 50 && var.app_pool_max_pods <= 250
    error_message = "app_pool_max_pods must be between 50 and 250."
  }
}

variable "admin_group_object_ids" {
  type        = list(string)
  description = "Entra ID groups that are cluster admins (Azure AD RBAC; local accounts are disabled)."

  validation {
    condition     = length(var.admin_group_object_ids) > 0
    error_message = "At least one admin group is needed: local accounts are disabled."
  }
}

variable "private_cluster" {
  type        = bool
  description = "Make the API server private (prod); otherwise it is public but limited to api_authorized_ip_ranges."
  default     = false
}

variable "api_authorized_ip_ranges" {
  type        = list(string)
  description = "CIDRs allowed to reach a public API server (CI agents, admins). Ignored for a private cluster."
  default     = []
}

variable "acr_id" {
  type        = string
  description = "Container registry the kubelet identity pulls from (AcrPull)."
}

variable "log_analytics_workspace_id" {
  type        = string
  description = "Log Analytics workspace for Container Insights and the control plane's diagnostic logs."
}

variable "application_gateway_id" {
  type        = string
  description = "Application Gateway managed by the AGIC add-on."
}

variable "application_gateway_subnet_id" {
  type        = string
  description = "Subnet of the Application Gateway (AGIC needs to join it)."
}

variable "workload_namespace" {
  type        = string
  description = "Namespace of the LiveOps workloads whose ServiceAccount is federated with the workload identity."
  default     = "liveops"
}

variable "workload_service_account" {
  type        = string
  description = "ServiceAccount of the LiveOps workloads federated with the workload identity."
  default     = "liveops"
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
