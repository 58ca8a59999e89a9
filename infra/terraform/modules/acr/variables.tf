variable "name" {
  type        = string
  description = "Registry name (globally unique, 5-50 alphanumerics), e.g. \"liveopsacr\"."

  validation {
    condition     = can(regex("^[a-zA-Z0-9]{5,50}$", var.name))
    error_message = "name must be 5-50 letters or digits."
  }
}

variable "location" {
  type        = string
  description = "Azure region of the registry."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the registry."
}

variable "sku" {
  type        = string
  description = "Registry SKU: Premium in prod (private endpoint, retention, zone redundancy); Standard in dev."
  default     = "Premium"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.sku)
    error_message = "sku must be Basic, Standard or Premium."
  }
}

variable "private_endpoint_subnet_id" {
  type        = string
  description = "Subnet of the registry's private endpoint (Premium only); empty string keeps the public endpoint."
  default     = ""
}

variable "private_dns_zone_id" {
  type        = string
  description = "ID of the privatelink.azurecr.io zone the private endpoint registers in; used with private_endpoint_subnet_id."
  default     = ""
}

variable "allowed_ip_ranges" {
  type        = list(string)
  description = "CIDRs (CI agents) allowed through the registry firewall when the public endpoint is kept (Premium only)."
  default     = []
}

variable "untagged_retention_days" {
  type        = number
  description = "Days untagged manifests are kept before the retention policy deletes them (Premium only)."
  default     = 7

  validation {
    condition     = var.untagged_retention_days >= 0 && var.untagged_retention_days <= 365
    error_message = "untagged_retention_days must be between 0 and 365."
  }
}

variable "georeplication_locations" {
  type        = list(string)
  description = "Extra regions the registry is replicated to (Premium only)."
  default     = []
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
