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
  description = "Azure region of the server."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the server."
}

variable "postgres_version" {
  type        = string
  description = "PostgreSQL major version."
  default     = "16"

  validation {
    condition     = contains(["14", "15", "16", "17"], var.postgres_version)
    error_message = "postgres_version must be 14, 15, 16 or 17."
  }
}

variable "sku_name" {
  type        = string
  description = "Compute SKU, e.g. GP_Standard_D4ds_v5 (prod; zone-redundant HA needs General Purpose or Memory Optimized) or B_Standard_B1ms (dev)."
}

variable "storage_mb" {
  type        = number
  description = "Storage size in MiB (grows automatically)."
  default     = 131072
}

variable "zone" {
  type        = string
  description = "Availability zone of the primary."
  default     = "1"
}

variable "high_availability" {
  type        = bool
  description = "Zone-redundant high availability: a hot standby in standby_zone with synchronous replication."
  default     = true
}

variable "standby_zone" {
  type        = string
  description = "Availability zone of the HA standby (different from zone)."
  default     = "2"
}

variable "backup_retention_days" {
  type        = number
  description = "Point-in-time restore window in days (7-35)."
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 7 and 35."
  }
}

variable "geo_redundant_backup" {
  type        = bool
  description = "Copy backups to the paired region (prod)."
  default     = true
}

variable "read_replica" {
  type        = bool
  description = "Create a read replica (prod) for reads that may lag, e.g. reports and rebuilds."
  default     = false
}

variable "administrator_login" {
  type        = string
  description = "Administrator login of the server; LiveOps connects with it (a dedicated server) until a least-privilege role is created by migration."
  default     = "liveops"
}

variable "database_name" {
  type        = string
  description = "Database LiveOps uses."
  default     = "liveops"
}

variable "private_endpoint_subnet_id" {
  type        = string
  description = "Subnet of the private endpoints of the server and its replica."
}

variable "private_dns_zone_id" {
  type        = string
  description = "ID of the privatelink.postgres.database.azure.com zone."
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
