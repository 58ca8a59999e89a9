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
  description = "Azure region of the cache."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the cache."
}

variable "sku_name" {
  type        = string
  description = "Cache SKU: Premium in prod (persistence, zones, private endpoint), Standard or Basic in dev."
  default     = "Premium"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.sku_name)
    error_message = "sku_name must be Basic, Standard or Premium."
  }
}

variable "capacity" {
  type        = number
  description = "Cache size within the SKU family (C0-C6 for Basic/Standard, P1-P5 for Premium)."
  default     = 1

  validation {
    condition     = var.capacity >= 0 && var.capacity <= 6
    error_message = "capacity must be between 0 and 6."
  }
}

variable "zones" {
  type        = list(string)
  description = "Availability zones of the Premium cache's nodes (primary and replicas)."
  default     = ["1", "2", "3"]
}

variable "replicas_per_primary" {
  type        = number
  description = "Replicas of each primary (Premium); two replicas put a node in each of three zones."
  default     = 2
}

variable "persistence" {
  type        = string
  description = "Premium persistence to the storage account: \"aof\" (every write, flushed each second), \"rdb\" (snapshots every rdb_backup_frequency minutes) or \"none\". Azure Cache for Redis accepts only one of AOF and RDB at a time."
  default     = "aof"

  validation {
    condition     = contains(["aof", "rdb", "none"], var.persistence)
    error_message = "persistence must be aof, rdb or none (Azure refuses AOF and RDB together)."
  }
}

variable "rdb_backup_frequency" {
  type        = number
  description = "Minutes between RDB snapshots when persistence is rdb."
  default     = 60

  validation {
    condition     = contains([15, 30, 60, 360, 720, 1440], var.rdb_backup_frequency)
    error_message = "rdb_backup_frequency must be 15, 30, 60, 360, 720 or 1440."
  }
}

variable "private_endpoint_subnet_id" {
  type        = string
  description = "Subnet of the cache's private endpoint."
}

variable "private_dns_zone_id" {
  type        = string
  description = "ID of the privatelink.redis.cache.windows.net zone."
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
