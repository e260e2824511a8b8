/** The simulated business: the defaults a sandbox uses for the token, account and number. */
export { SANDBOX_APP_SECRET as SIMULATOR_APP_SECRET, SANDBOX_PHONE_NUMBER_ID as SIMULATOR_PHONE_NUMBER_ID } from '../config';
export const SIMULATOR_ACCESS_TOKEN = 'ctu-sandbox-access-token';
export const SIMULATOR_WABA_ID = '100000000000002';
export const SIMULATOR_DISPLAY_PHONE_NUMBER = '15550009999';
