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
  description = "Azure region of the VM."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the VM."
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the VM (its network security group opens 3306 to the AKS subnet only)."
}

variable "vm_size" {
  type        = string
  description = "VM size, e.g. Standard_D4ds_v5 (prod) or Standard_B2s (dev)."
}

variable "zone" {
  type        = string
  description = "Availability zone of the VM and its disks."
  default     = "1"
}

variable "admin_username" {
  type        = string
  description = "Login of the administrator account (SSH key only)."
  default     = "liveopsadmin"
}

variable "admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the administrator; password authentication is disabled."

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) ", var.admin_ssh_public_key))
    error_message = "admin_ssh_public_key must be an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa)."
  }
}

variable "data_disk_size_gb" {
  type        = number
  description = "Size of the managed data disk that holds MySQL's data directory."
  default     = 256
}

variable "backup_disk_size_gb" {
  type        = number
  description = "Size of the managed disk that keeps the local dumps before and after their upload."
  default     = 128
}

variable "disk_storage_account_type" {
  type        = string
  description = "Storage type of the managed data disks."
  default     = "Premium_LRS"

  validation {
    condition     = contains(["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "PremiumV2_LRS"], var.disk_storage_account_type)
    error_message = "disk_storage_account_type must be a zonal (LRS) disk type."
  }
}

variable "database_name" {
  type        = string
  description = "Database created for LiveOps."
  default     = "liveops"
}

variable "database_user" {
  type        = string
  description = "MySQL user created for LiveOps (TLS required)."
  default     = "liveops"
}

variable "key_vault_name" {
  type        = string
  description = "Key Vault the VM reads the LiveOps user's password from at boot (with its managed identity)."
}

variable "password_secret_name" {
  type        = string
  description = "Name of the Key Vault secret holding the LiveOps user's password."
  default     = "mysql-liveops-password"
}

variable "backup_interval_minutes" {
  type        = number
  description = "Minutes between two dumps (systemd timer)."
  default     = 15

  validation {
    condition     = var.backup_interval_minutes >= 5 && var.backup_interval_minutes <= 60 && 60 % var.backup_interval_minutes == 0
    error_message = "backup_interval_minutes must divide an hour and be between 5 and 60."
  }
}

variable "local_backup_retention_hours" {
  type        = number
  description = "Hours the dumps stay on the backup disk."
  default     = 24
}

variable "blob_backup_retention_days" {
  type        = number
  description = "Days the dumps stay in the blob container before the lifecycle policy deletes them."
  default     = 35
}

variable "private_endpoint_subnet_id" {
  type        = string
  description = "Subnet of the backup storage account's private endpoint."
}

variable "blob_private_dns_zone_id" {
  type        = string
  description = "ID of the privatelink.blob.core.windows.net zone."
}

variable "log_analytics_workspace_id" {
  type        = string
  description = "Log Analytics workspace that receives the backup container's access logs."
}

variable "azure_backup_enabled" {
  type        = bool
  description = "Also protect the whole VM with Azure Backup (daily snapshots in a Recovery Services vault)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}
