# Application Gateway WAF_v2 in front of the gateway service. The Application Gateway Ingress
# Controller (AKS add-on) owns listeners, pools, settings and rules after creation; Terraform
# creates the gateway with one HTTPS listener placeholder, the TLS policy, the certificate from
# Key Vault and the WAF policy: OWASP 3.2 in Prevention mode and a per-client-address rate limit.

locals {
  frontend_ip  = "public"
  https_port   = "https"
  backend_pool = "bootstrap"
  http_setting = "bootstrap"
  listener     = "https"
  certificate  = "gateway-tls"
}

resource "azurerm_public_ip" "this" {
  name                = "${var.name_prefix}-appgw-pip"
  location            = var.location
  resource_group_name = var.resource_group_name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = var.zones
  tags                = var.tags
}

resource "azurerm_web_application_firewall_policy" "this" {
  name                = "${var.name_prefix}-waf"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  policy_settings {
    enabled                     = true
    mode                        = "Prevention"
    request_body_check          = true
    max_request_body_size_in_kb = 1024
    file_upload_limit_in_mb     = 1
  }

  # Each client address: at most rate_limit_per_minute requests a minute, then 403 until the
  # next minute. The condition matches every address (not in 255.255.255.255/32).
  custom_rules {
    name                 = "RateLimitPerClientAddr"
    priority             = 10
    rule_type            = "RateLimitRule"
    action               = "Block"
    rate_limit_duration  = "OneMin"
    rate_limit_threshold = var.rate_limit_per_minute
    group_rate_limit_by  = "ClientAddr"

    match_conditions {
      match_variables {
        variable_name = "RemoteAddr"
      }
      operator           = "IPMatch"
      negation_condition = true
      match_values       = ["255.255.255.255/32"]
    }
  }

  managed_rules {
    managed_rule_set {
      type    = "OWASP"
      version = "3.2"
    }
  }
}

resource "azurerm_application_gateway" "this" {
  name                              = "${var.name_prefix}-appgw"
  location                          = var.location
  resource_group_name               = var.resource_group_name
  zones                             = var.zones
  firewall_policy_id                = azurerm_web_application_firewall_policy.this.id
  force_firewall_policy_association = true
  tags                              = var.tags

  sku {
    name = "WAF_v2"
    tier = "WAF_v2"
  }

  autoscale_configuration {
    min_capacity = var.min_capacity
    max_capacity = var.max_capacity
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [var.identity_id]
  }

  # TLS 1.2 and 1.3 only, forward-secret AEAD ciphers only (TLS 1.3 suites are implied).
  ssl_policy {
    policy_type          = "CustomV2"
    min_protocol_version = "TLSv1_2"
    cipher_suites = [
      "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ]
  }

  gateway_ip_configuration {
    name      = "gateway"
    subnet_id = var.subnet_id
  }

  frontend_ip_configuration {
    name                 = local.frontend_ip
    public_ip_address_id = azurerm_public_ip.this.id
  }

  frontend_port {
    name = local.https_port
    port = 443
  }

  ssl_certificate {
    name                = local.certificate
    key_vault_secret_id = var.certificate_secret_id
  }

  backend_address_pool {
    name = local.backend_pool
  }

  backend_http_settings {
    name                  = local.http_setting
    cookie_based_affinity = "Disabled"
    port                  = 8080
    protocol              = "Http"
    request_timeout       = 30
  }

  http_listener {
    name                           = local.listener
    frontend_ip_configuration_name = local.frontend_ip
    frontend_port_name             = local.https_port
    protocol                       = "Https"
    ssl_certificate_name           = local.certificate
  }

  request_routing_rule {
    name                       = "bootstrap"
    rule_type                  = "Basic"
    priority                   = 20000
    http_listener_name         = local.listener
    backend_address_pool_name  = local.backend_pool
    backend_http_settings_name = local.http_setting
  }

  lifecycle {
    # AGIC rewrites these from the Ingress resources; Terraform must not fight it.
    ignore_changes = [
      backend_address_pool,
      backend_http_settings,
      frontend_port,
      http_listener,
      probe,
      redirect_configuration,
      request_routing_rule,
      ssl_certificate,
      url_path_map,
      rewrite_rule_set,
      tags,
    ]
  }
}

resource "azurerm_monitor_diagnostic_setting" "this" {
  name                       = "appgw"
  target_resource_id         = azurerm_application_gateway.this.id
  log_analytics_workspace_id = var.log_analytics_workspace_id

  enabled_log {
    category = "ApplicationGatewayAccessLog"
  }

  enabled_log {
    category = "ApplicationGatewayFirewallLog"
  }

  enabled_metric {
    category = "AllMetrics"
  }
}
