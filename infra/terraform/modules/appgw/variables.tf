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
  description = "Azure region of the gateway."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the gateway."
}

variable "subnet_id" {
  type        = string
  description = "Dedicated subnet of the gateway."
}

variable "zones" {
  type        = list(string)
  description = "Availability zones of the gateway and its public address."
  default     = ["1", "2", "3"]
}

variable "min_capacity" {
  type        = number
  description = "Minimum autoscale instances (2 or more keeps one per zone during an outage)."
  default     = 2

  validation {
    condition     = var.min_capacity >= 0 && var.min_capacity <= 125
    error_message = "min_capacity must be between 0 and 125."
  }
}

variable "max_capacity" {
  type        = number
  description = "Maximum autoscale instances."
  default     = 10

  validation {
    condition     = var.max_capacity >= 2 && var.max_capacity <= 125
    error_message = "max_capacity must be between 2 and 125."
  }
}

variable "identity_id" {
  type        = string
  description = "User-assigned identity the gateway reads its certificate from Key Vault with (Key Vault Secrets User)."
}

variable "certificate_secret_id" {
  type        = string
  description = "Versionless Key Vault secret ID of the TLS certificate (key_vault_secret_id), so renewals are picked up."
}

variable "rate_limit_per_minute" {
  type        = number
  description = "Requests a minute one client address may make before the WAF blocks it."
  default     = 100

  validation {
    condition     = var.rate_limit_per_minute >= 1
    error_message = "rate_limit_per_minute must be positive."
  }
}

variable "log_analytics_workspace_id" {
  type        = string
  description = "Log Analytics workspace for access and WAF logs."
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
