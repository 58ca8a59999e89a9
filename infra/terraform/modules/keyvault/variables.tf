variable "name" {
  type        = string
  description = "Key Vault name (globally unique, 3-24 characters), e.g. \"liveops-prod-kv\"."

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", var.name))
    error_message = "name must be 3-24 letters, digits or dashes, starting with a letter."
  }
}

variable "location" {
  type        = string
  description = "Azure region of the vault."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the vault."
}

variable "sku_name" {
  type        = string
  description = "Vault SKU: premium (HSM-backed keys) in prod, standard in dev."
  default     = "premium"

  validation {
    condition     = contains(["standard", "premium"], var.sku_name)
    error_message = "sku_name must be standard or premium."
  }
}

variable "private_endpoint_subnet_id" {
  type        = string
  description = "Subnet of the vault's private endpoint."
}

variable "private_dns_zone_id" {
  type        = string
  description = "ID of the privatelink.vaultcore.azure.net zone."
}

variable "public_network_access_enabled" {
  type        = bool
  description = "Keep the public endpoint (still default-deny, open only to allowed_ip_ranges). false in prod: private endpoint only."
  default     = false
}

variable "allowed_ip_ranges" {
  type        = list(string)
  description = "CIDRs (the Terraform runner) let through the default-deny firewall when the public endpoint is on."
  default     = []
}

variable "secret_reader_principal_ids" {
  type        = map(string)
  description = "Principals given Key Vault Secrets User on the vault, by a stable name (e.g. workload = the LiveOps workload identity, appgw = the gateway's identity)."
}

variable "secret_expiry_days" {
  type        = number
  description = "Days after which the secrets expire; Terraform moves the expiry forward when it is reached, and the expiry alert asks for a rotation."
  default     = 180

  validation {
    condition     = var.secret_expiry_days >= 30 && var.secret_expiry_days <= 730
    error_message = "secret_expiry_days must be between 30 and 730."
  }
}

variable "db_url" {
  type        = string
  description = "DB_URL of LiveOps (postgres:// or mysql:// with credentials), stored as secret db-url."
  sensitive   = true
}

variable "redis_url" {
  type        = string
  description = "REDIS_URL of LiveOps (rediss:// with the access key), stored as secret redis-url."
  sensitive   = true
}

variable "bus_conn" {
  type        = string
  description = "BUS_CONN of LiveOps (the Service Bus connection string), stored as secret bus-conn."
  sensitive   = true
}

variable "extra_secrets" {
  type        = map(string)
  description = "Further secrets to store by name (e.g. mysql-liveops-password read by the MySQL VM at boot)."
  default     = {}
  sensitive   = true
}

variable "gateway_certificate" {
  type = object({
    subject     = string
    dns_names   = list(string)
    issuer_name = string
  })
  description = "TLS certificate of the Application Gateway, created in the vault: issuer \"Self\" (dev), \"Unknown\" (a CSR to merge by hand) or a registered CA issuer."
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
